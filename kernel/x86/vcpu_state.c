/* SPDX-License-Identifier: MIT */
#include "kernel/x86/vcpu_state.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kvm_ioctl.h"
#include "kernel/util/log.h"
#include "kernel/vm_priv.h"
#include "kernel/x86/vcpu_arch.h"
#include "kernel/x86/vcpu_state_priv.h"

_Static_assert(sizeof(struct kvm_lapic_state) == 1024, "kvm_lapic_state");
_Static_assert(sizeof(struct kvm_xsave) == 4096, "kvm_xsave");
_Static_assert(sizeof(struct kvm_regs) == 18 * 8, "kvm_regs");
_Static_assert(sizeof(struct kvm_vcpu_events) == 64, "kvm_vcpu_events");

/* The host's save-worthy MSR list, read once. */
static pthread_mutex_t msr_list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm_msr_list *msr_list;

int x86_msr_index_list(int kvm_fd, const uint32_t **out)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *l;
	int ret;

	pthread_mutex_lock(&msr_list_lock);
	if (msr_list)
		goto done;
	/* A first call with no room tells how many there are. */
	ret = kvm_ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe);
	if (ret < 0 && ret != -E2BIG)
		goto err;
	if (probe.nmsrs > X86_STATE_MAX_MSRS) {
		ret = -E2BIG;
		goto err;
	}
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
	if (!l) {
		ret = -ENOMEM;
		goto err;
	}
	l->nmsrs = probe.nmsrs;
	ret = kvm_ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l);
	if (ret < 0) {
		free(l);
		goto err;
	}
	msr_list = l;
done:
	*out = msr_list->indices;
	ret = (int)msr_list->nmsrs;
	pthread_mutex_unlock(&msr_list_lock);
	return ret;
err:
	pthread_mutex_unlock(&msr_list_lock);
	pr_err("KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));
	return ret;
}

/* Allocates @n zeroed pointers and @n messages initialised by @init. */
#define ALLOC_REPEATED(arr, n, type, init)                     \
	({                                                     \
		int r_ = 0;                                    \
		(arr) = calloc((n) ? (n) : 1, sizeof(*(arr))); \
		if (!(arr))                                    \
			r_ = -ENOMEM;                          \
		for (size_t i_ = 0; !r_ && i_ < (n); i_++) {   \
			(arr)[i_] = malloc(sizeof(type));      \
			if (!(arr)[i_])                        \
				r_ = -ENOMEM;                  \
			else                                   \
				init((arr)[i_]);               \
		}                                              \
		r_;                                            \
	})

static Vmrun__X86Segment *seg_to_msg(const struct kvm_segment *s)
{
	Vmrun__X86Segment *m = malloc(sizeof(*m));

	if (!m)
		return NULL;
	vmrun__x86_segment__init(m);
	m->base_address = s->base;
	m->limit = s->limit;
	m->selector = s->selector;
	m->type = s->type;
	m->present = s->present;
	m->dpl = s->dpl;
	m->db = s->db;
	m->s = s->s;
	m->l = s->l;
	m->g = s->g;
	m->avl = s->avl;
	m->unusable = s->unusable;
	return m;
}

static Vmrun__X86Dtable *dt_to_msg(const struct kvm_dtable *d)
{
	Vmrun__X86Dtable *m = malloc(sizeof(*m));

	if (!m)
		return NULL;
	vmrun__x86_dtable__init(m);
	m->base_address = d->base;
	m->limit = d->limit;
	return m;
}

/*
 * The segment part shared by struct kvm_sregs and struct kvm_sregs2,
 * whose leading members are laid out alike.
 */
#define SREGS_COMMON_TO_MSG(m, s)                                          \
	({                                                                 \
		(m)->cs = seg_to_msg(&(s)->cs);                            \
		(m)->ds = seg_to_msg(&(s)->ds);                            \
		(m)->es = seg_to_msg(&(s)->es);                            \
		(m)->fs = seg_to_msg(&(s)->fs);                            \
		(m)->gs = seg_to_msg(&(s)->gs);                            \
		(m)->ss = seg_to_msg(&(s)->ss);                            \
		(m)->tr = seg_to_msg(&(s)->tr);                            \
		(m)->ldt = seg_to_msg(&(s)->ldt);                          \
		(m)->gdt = dt_to_msg(&(s)->gdt);                           \
		(m)->idt = dt_to_msg(&(s)->idt);                           \
		(m)->cr0 = (s)->cr0;                                       \
		(m)->cr2 = (s)->cr2;                                       \
		(m)->cr3 = (s)->cr3;                                       \
		(m)->cr4 = (s)->cr4;                                       \
		(m)->cr8 = (s)->cr8;                                       \
		(m)->efer = (s)->efer;                                     \
		(m)->apic_base = (s)->apic_base;                           \
		((m)->cs && (m)->ds && (m)->es && (m)->fs && (m)->gs &&    \
		 (m)->ss && (m)->tr && (m)->ldt && (m)->gdt && (m)->idt) ? \
			0 :                                                \
			-ENOMEM;                                           \
	})

static int save_sregs(struct vcpu *vcpu, Vmrun__VcpuState *st)
{
	Vmrun__X86Sregs *m = malloc(sizeof(*m));
	unsigned int i;
	int ret;

	if (!m)
		return -ENOMEM;
	vmrun__x86_sregs__init(m);
	st->sregs = m;
	if (has_cap(vcpu, KVM_CAP_SREGS2)) {
		struct kvm_sregs2 s;

		ret = kvm_ioctl(vcpu->fd, KVM_GET_SREGS2, &s);
		if (ret < 0)
			return ret;
		m->pdptrs = calloc(4, sizeof(uint64_t));
		if (!m->pdptrs)
			return -ENOMEM;
		m->n_pdptrs = 4;
		for (i = 0; i < 4; i++)
			m->pdptrs[i] = s.pdptrs[i];
		m->sregs2 = true;
		m->flags = s.flags;
		return SREGS_COMMON_TO_MSG(m, &s);
	} else {
		struct kvm_sregs s;

		ret = kvm_ioctl(vcpu->fd, KVM_GET_SREGS, &s);
		if (ret < 0)
			return ret;
		m->interrupt_bitmap = calloc(4, sizeof(uint64_t));
		if (!m->interrupt_bitmap)
			return -ENOMEM;
		m->n_interrupt_bitmap = 4;
		for (i = 0; i < 4; i++)
			m->interrupt_bitmap[i] = s.interrupt_bitmap[i];
		return SREGS_COMMON_TO_MSG(m, &s);
	}
}

static int save_regs(struct vcpu *vcpu, Vmrun__VcpuState *st)
{
	Vmrun__X86Regs *m = malloc(sizeof(*m));
	struct kvm_regs r;
	int ret;

	if (!m)
		return -ENOMEM;
	vmrun__x86_regs__init(m);
	st->regs = m;
	ret = kvm_ioctl(vcpu->fd, KVM_GET_REGS, &r);
	if (ret < 0)
		return ret;
#define R(x) m->x = r.x
	R(rax), R(rbx), R(rcx), R(rdx), R(rsi), R(rdi), R(rsp), R(rbp);
	R(r8), R(r9), R(r10), R(r11), R(r12), R(r13), R(r14), R(r15);
	R(rip), R(rflags);
#undef R
	return 0;
}

static int save_fpu(struct vcpu *vcpu, Vmrun__VcpuState *st)
{
	size_t size = host_xsave_size(vcpu->vm);
	struct kvm_xcrs xcrs;
	void *buf;
	int ret;

	if (!size) {
		buf = calloc(1, sizeof(struct kvm_fpu));
		if (!buf)
			return -ENOMEM;
		st->fpu.data = buf;
		st->fpu.len = sizeof(struct kvm_fpu);
		return kvm_ioctl(vcpu->fd, KVM_GET_FPU, buf);
	}
	buf = calloc(1, size);
	if (!buf)
		return -ENOMEM;
	st->xsave.data = buf;
	st->xsave.len = size;
	ret = kvm_ioctl(vcpu->fd,
			size > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 :
							  KVM_GET_XSAVE,
			buf);
	if (ret < 0 || !has_cap(vcpu, KVM_CAP_XCRS))
		return ret;
	ret = kvm_ioctl(vcpu->fd, KVM_GET_XCRS, &xcrs);
	if (ret < 0)
		return ret;
	if (xcrs.nr_xcrs > KVM_MAX_XCRS)
		return -EIO;
	ret = ALLOC_REPEATED(st->xcrs, xcrs.nr_xcrs, Vmrun__X86Xcr,
			     vmrun__x86_xcr__init);
	st->n_xcrs = st->xcrs ? xcrs.nr_xcrs : 0;
	for (uint32_t i = 0; !ret && i < xcrs.nr_xcrs; i++) {
		st->xcrs[i]->xcr = xcrs.xcrs[i].xcr;
		st->xcrs[i]->value = xcrs.xcrs[i].value;
	}
	return ret;
}

/*
 * Reads every MSR of the host's list in batches. KVM_GET_MSRS stops at the
 * first MSR it cannot read and returns how many it read, so a failing MSR
 * is left out and the batch goes on after it.
 */
static int save_msrs(struct vcpu *vcpu, Vmrun__VcpuState *st)
{
	struct kvm_msrs *b;
	const uint32_t *idx;
	size_t n = 0, i, k, pos;
	int nr, ret;

	nr = x86_msr_index_list(vcpu->vm->kvm_fd, &idx);
	if (nr < 0)
		return nr;
	ret = ALLOC_REPEATED(st->msrs, (size_t)nr, Vmrun__X86Msr,
			     vmrun__x86_msr__init);
	st->n_msrs = st->msrs ? (size_t)nr : 0;
	if (ret < 0)
		return ret;
	b = calloc(1, sizeof(*b) + MSR_BATCH * sizeof(struct kvm_msr_entry));
	if (!b)
		return -ENOMEM;
	for (pos = 0; pos < (size_t)nr;) {
		k = MIN((size_t)nr - pos, (size_t)MSR_BATCH);
		b->nmsrs = (uint32_t)k;
		for (i = 0; i < k; i++) {
			b->entries[i].index = idx[pos + i];
			b->entries[i].data = 0;
		}
		ret = kvm_ioctl(vcpu->fd, KVM_GET_MSRS, b);
		if (ret < 0)
			break;
		for (i = 0; i < (size_t)ret; i++) {
			st->msrs[n]->index = b->entries[i].index;
			st->msrs[n]->value = b->entries[i].data;
			if (b->entries[i].index == MSR_IA32_TSC)
				st->tsc = b->entries[i].data;
			n++;
		}
		/* Skip the one that failed, if one did. */
		pos += (size_t)ret < k ? (size_t)ret + 1 : k;
		ret = 0;
	}
	free(b);
	/* The unused tail is freed here so that n_msrs counts the rest. */
	for (i = n; i < st->n_msrs; i++)
		free(st->msrs[i]);
	st->n_msrs = n;
	return ret;
}

static int save_events(struct vcpu *vcpu, Vmrun__VcpuState *st)
{
	Vmrun__X86Events *m = malloc(sizeof(*m));
	struct kvm_vcpu_events e;
	int ret;

	if (!m)
		return -ENOMEM;
	vmrun__x86_events__init(m);
	st->events = m;
	ret = kvm_ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &e);
	if (ret < 0)
		return ret;
	m->flags = e.flags;
	m->exception_injected = e.exception.injected;
	m->exception_nr = e.exception.nr;
	m->exception_has_error_code = e.exception.has_error_code;
	m->exception_pending = e.exception.pending;
	m->exception_error_code = e.exception.error_code;
	m->interrupt_injected = e.interrupt.injected;
	m->interrupt_nr = e.interrupt.nr;
	m->interrupt_soft = e.interrupt.soft;
	m->interrupt_shadow = e.interrupt.shadow;
	m->nmi_injected = e.nmi.injected;
	m->nmi_pending = e.nmi.pending;
	m->nmi_masked = e.nmi.masked;
	m->sipi_vector = e.sipi_vector;
	m->smi_smm = e.smi.smm;
	m->smi_pending = e.smi.pending;
	m->smi_inside_nmi = e.smi.smm_inside_nmi;
	m->smi_latched_init = e.smi.latched_init;
	m->triple_fault_pending = e.triple_fault.pending;
	m->exception_has_payload = e.exception_has_payload;
	m->exception_payload = e.exception_payload;
	return 0;
}

static int save_debugregs(struct vcpu *vcpu, Vmrun__VcpuState *st)
{
	Vmrun__X86Debugregs *m = malloc(sizeof(*m));
	struct kvm_debugregs d;
	int ret;

	if (!m)
		return -ENOMEM;
	vmrun__x86_debugregs__init(m);
	st->debugregs = m;
	ret = kvm_ioctl(vcpu->fd, KVM_GET_DEBUGREGS, &d);
	if (ret < 0)
		return ret;
	m->db = calloc(4, sizeof(uint64_t));
	if (!m->db)
		return -ENOMEM;
	m->n_db = 4;
	memcpy(m->db, d.db, sizeof(d.db));
	m->dr6 = d.dr6;
	m->dr7 = d.dr7;
	m->flags = d.flags;
	return 0;
}

static int save_cpuid(struct vcpu *vcpu, Vmrun__VcpuState *st)
{
	struct kvm_cpuid2 *c;
	uint32_t i, n;
	int ret;

	ret = x86_vcpu_cpuid(vcpu, &c);
	if (ret < 0)
		return ret;
	/* KVM looks leaves up first match first: a later entry with the
	 * same leaf and index is dead (seen: a zeroed leaf-0 tail padding
	 * the list to its buffer on the emulated host's KVM 6.1). Keep the
	 * live ones only. */
	for (i = 0, n = 0; i < c->nent; i++) {
		uint32_t k;

		for (k = 0; k < n; k++)
			if (c->entries[k].function == c->entries[i].function &&
			    c->entries[k].index == c->entries[i].index)
				break;
		if (k == n)
			c->entries[n++] = c->entries[i];
	}
	ret = ALLOC_REPEATED(st->cpuid, n, Vmrun__X86CpuidEntry,
			     vmrun__x86_cpuid_entry__init);
	st->n_cpuid = st->cpuid ? n : 0;
	for (i = 0; !ret && i < n; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];
		Vmrun__X86CpuidEntry *m = st->cpuid[i];

		m->function = e->function;
		m->index = e->index;
		m->flags = e->flags;
		m->eax = e->eax;
		m->ebx = e->ebx;
		m->ecx = e->ecx;
		m->edx = e->edx;
	}
	free(c);
	return ret;
}

void x86_vcpu_state_free(Vmrun__VcpuState *st)
{
	/*
	 * Every part was allocated with malloc(), which is what the default
	 * protobuf-c allocator frees with, so one call frees the whole tree
	 * whether it was built here or unpacked.
	 */
	if (st)
		vmrun__vcpu_state__free_unpacked(st, NULL);
}

int x86_vcpu_state_save(struct vcpu *vcpu, Vmrun__VcpuState **out)
{
	Vmrun__VcpuState *st;
	struct kvm_mp_state mp;
	int ret;

	ret = state_access_ok(vcpu);
	if (!ret)
		ret = vcpu_apply_staged(vcpu);
	if (ret < 0)
		return ret;
	st = malloc(sizeof(*st));
	if (!st)
		return -ENOMEM;
	vmrun__vcpu_state__init(st);
	st->id = vcpu->id;
	st->apic_id = vcpu->arch.apic_id;
	ret = save_regs(vcpu, st);
	if (!ret)
		ret = save_sregs(vcpu, st);
	if (!ret)
		ret = save_fpu(vcpu, st);
	if (!ret)
		ret = save_msrs(vcpu, st);
	if (!ret && vcpu->vm->irqchip) {
		st->lapic.data = calloc(1, sizeof(struct kvm_lapic_state));
		ret = st->lapic.data ? 0 : -ENOMEM;
		if (!ret) {
			st->lapic.len = sizeof(struct kvm_lapic_state);
			ret = kvm_ioctl(vcpu->fd, KVM_GET_LAPIC,
					st->lapic.data);
		}
	}
	if (!ret)
		ret = save_events(vcpu, st);
	if (!ret) {
		ret = kvm_ioctl(vcpu->fd, KVM_GET_MP_STATE, &mp);
		st->mp_state = mp.mp_state;
	}
	if (!ret)
		ret = save_debugregs(vcpu, st);
	if (!ret && has_cap(vcpu, KVM_CAP_GET_TSC_KHZ)) {
		ret = kvm_ioctl_val(vcpu->fd, KVM_GET_TSC_KHZ, 0);
		if (ret > 0)
			st->tsc_khz = (uint32_t)ret;
		ret = ret < 0 ? ret : 0;
	}
	if (!ret)
		ret = save_cpuid(vcpu, st);
	if (ret < 0) {
		pr_err("vCPU %u: capturing state: %s", vcpu->id,
		       strerror(-ret));
		x86_vcpu_state_free(st);
		return ret;
	}
	*out = st;
	return 0;
}
