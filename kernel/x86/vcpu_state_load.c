/* SPDX-License-Identifier: MIT */
/*
 * Loading a Vmrun__VcpuState into a vCPU: every check first, then the
 * KVM calls in the order KVM needs (see x86_vcpu_state_load()).
 */
#include "kernel/x86/vcpu_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/util/log.h"
#include "kernel/x86/vcpu_state_priv.h"

/* The event flags KVM takes without extra capabilities enabled. */
#define EVENTS_FLAGS                                                         \
	(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR | \
	 KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM)

static void seg_from_msg(struct kvm_segment *s, const Vmrun__X86Segment *m)
{
	memset(s, 0, sizeof(*s));
	s->base = m->base_address;
	s->limit = m->limit;
	s->selector = (uint16_t)m->selector;
	s->type = (uint8_t)m->type;
	s->present = m->present;
	s->dpl = (uint8_t)m->dpl;
	s->db = m->db;
	s->s = m->s;
	s->l = m->l;
	s->g = m->g;
	s->avl = m->avl;
	s->unusable = m->unusable;
}

static bool seg_ok(const Vmrun__X86Segment *m)
{
	return m && m->selector <= 0xffff && m->type <= 15 && m->dpl <= 3;
}

#define SREGS_COMMON_FROM_MSG(s, m)                         \
	do {                                                \
		seg_from_msg(&(s)->cs, (m)->cs);            \
		seg_from_msg(&(s)->ds, (m)->ds);            \
		seg_from_msg(&(s)->es, (m)->es);            \
		seg_from_msg(&(s)->fs, (m)->fs);            \
		seg_from_msg(&(s)->gs, (m)->gs);            \
		seg_from_msg(&(s)->ss, (m)->ss);            \
		seg_from_msg(&(s)->tr, (m)->tr);            \
		seg_from_msg(&(s)->ldt, (m)->ldt);          \
		(s)->gdt.base = (m)->gdt->base_address;     \
		(s)->gdt.limit = (uint16_t)(m)->gdt->limit; \
		(s)->idt.base = (m)->idt->base_address;     \
		(s)->idt.limit = (uint16_t)(m)->idt->limit; \
		(s)->cr0 = (m)->cr0;                        \
		(s)->cr2 = (m)->cr2;                        \
		(s)->cr3 = (m)->cr3;                        \
		(s)->cr4 = (m)->cr4;                        \
		(s)->cr8 = (m)->cr8;                        \
		(s)->efer = (m)->efer;                      \
		(s)->apic_base = (m)->apic_base;            \
	} while (0)

static void regs_from_msg(struct kvm_regs *r, const Vmrun__X86Regs *m)
{
#define R(x) r->x = m->x
	R(rax), R(rbx), R(rcx), R(rdx), R(rsi), R(rdi), R(rsp), R(rbp);
	R(r8), R(r9), R(r10), R(r11), R(r12), R(r13), R(r14), R(r15);
	R(rip), R(rflags);
#undef R
}

static void events_from_msg(struct kvm_vcpu_events *e,
			    const Vmrun__X86Events *m)
{
	memset(e, 0, sizeof(*e));
	e->flags = m->flags;
	e->exception.injected = m->exception_injected;
	e->exception.nr = (uint8_t)m->exception_nr;
	e->exception.has_error_code = m->exception_has_error_code;
	e->exception.pending = m->exception_pending;
	e->exception.error_code = m->exception_error_code;
	e->interrupt.injected = m->interrupt_injected;
	e->interrupt.nr = (uint8_t)m->interrupt_nr;
	e->interrupt.soft = m->interrupt_soft;
	e->interrupt.shadow = (uint8_t)m->interrupt_shadow;
	e->nmi.injected = m->nmi_injected;
	e->nmi.pending = m->nmi_pending;
	e->nmi.masked = m->nmi_masked;
	e->sipi_vector = m->sipi_vector;
	e->smi.smm = m->smi_smm;
	e->smi.pending = m->smi_pending;
	e->smi.smm_inside_nmi = m->smi_inside_nmi;
	e->smi.latched_init = m->smi_latched_init;
	e->triple_fault.pending = m->triple_fault_pending;
	e->exception_has_payload = m->exception_has_payload;
	e->exception_payload = m->exception_payload;
}

static int check_sregs(struct vcpu *vcpu, const Vmrun__X86Sregs *m)
{
	if (!m || !seg_ok(m->cs) || !seg_ok(m->ds) || !seg_ok(m->es) ||
	    !seg_ok(m->fs) || !seg_ok(m->gs) || !seg_ok(m->ss) ||
	    !seg_ok(m->tr) || !seg_ok(m->ldt) || !m->gdt || !m->idt ||
	    m->gdt->limit > 0xffff || m->idt->limit > 0xffff)
		return -EINVAL;
	if (m->sregs2) {
		if (m->n_pdptrs != 4 || m->n_interrupt_bitmap ||
		    (m->flags & ~(uint64_t)KVM_SREGS2_FLAGS_PDPTRS_VALID))
			return -EINVAL;
		if (!has_cap(vcpu, KVM_CAP_SREGS2))
			return -EOPNOTSUPP;
	} else if ((m->n_interrupt_bitmap != 0 && m->n_interrupt_bitmap != 4) ||
		   m->n_pdptrs || m->flags) {
		return -EINVAL;
	}
	return 0;
}

static int check_fpu(struct vcpu *vcpu, const Vmrun__VcpuState *st)
{
	size_t host = host_xsave_size(vcpu->vm);
	size_t i;

	/* Exactly one of the two, as x86_vcpu_state_save() writes them. */
	if (!st->xsave.len == !st->fpu.len)
		return -EINVAL;
	if (st->fpu.len && st->fpu.len != sizeof(struct kvm_fpu))
		return -EINVAL;
	if (st->xsave.len &&
	    (st->xsave.len < sizeof(struct kvm_xsave) || st->xsave.len > host))
		return -EINVAL;
	if (st->n_xcrs > KVM_MAX_XCRS || (st->n_xcrs && !st->xsave.len))
		return -EINVAL;
	for (i = 0; i < st->n_xcrs; i++)
		if (!st->xcrs[i])
			return -EINVAL;
	if (st->n_xcrs && !has_cap(vcpu, KVM_CAP_XCRS))
		return -EOPNOTSUPP;
	return 0;
}

static int check_msrs(struct vcpu *vcpu, const Vmrun__VcpuState *st)
{
	const uint32_t *idx;
	size_t i;
	int nr, j;

	nr = x86_msr_index_list(vcpu->vm->kvm_fd, &idx);
	if (nr < 0)
		return nr;
	if (st->n_msrs > X86_STATE_MAX_MSRS || st->n_msrs > (size_t)nr)
		return -EINVAL;
	for (i = 0; i < st->n_msrs; i++) {
		if (!st->msrs[i])
			return -EINVAL;
		/* Only MSRs this host's KVM lists as save-worthy. */
		for (j = 0; j < nr && idx[j] != st->msrs[i]->index; j++)
			;
		if (j == nr) {
			pr_warn("vCPU %u: MSR %#x is not in this host's list",
				vcpu->id, st->msrs[i]->index);
			return -EINVAL;
		}
	}
	return 0;
}

static int check_events(const Vmrun__X86Events *e)
{
	if (!e || (e->flags & ~(uint32_t)EVENTS_FLAGS) ||
	    e->exception_nr >= 32 || e->interrupt_nr > 255 ||
	    (e->interrupt_shadow &
	     ~(uint32_t)(KVM_X86_SHADOW_INT_MOV_SS | KVM_X86_SHADOW_INT_STI)) ||
	    e->sipi_vector > 255 || e->triple_fault_pending ||
	    e->exception_has_payload || e->exception_payload)
		return -EINVAL;
	return 0;
}

int x86_vcpu_state_check(struct vcpu *vcpu, const Vmrun__VcpuState *st)
{
	const Vmrun__X86Debugregs *d;
	size_t i;
	int ret;

	if (!st || st->id != vcpu->id || st->apic_id != vcpu->arch.apic_id ||
	    !st->regs)
		return -EINVAL;
	ret = check_sregs(vcpu, st->sregs);
	if (!ret)
		ret = check_fpu(vcpu, st);
	if (!ret)
		ret = check_msrs(vcpu, st);
	if (!ret)
		ret = check_events(st->events);
	if (ret < 0)
		return ret;
	if (st->lapic.len !=
	    (vcpu->vm->irqchip ? sizeof(struct kvm_lapic_state) : 0))
		return -EINVAL;
	if (st->mp_state > KVM_MP_STATE_SIPI_RECEIVED &&
	    st->mp_state != KVM_MP_STATE_AP_RESET_HOLD &&
	    st->mp_state != KVM_MP_STATE_SUSPENDED)
		return -EINVAL;
	d = st->debugregs;
	if (!d || d->n_db != 4 || d->flags)
		return -EINVAL;
	if (!st->n_cpuid || st->n_cpuid > X86_STATE_MAX_CPUID)
		return -EINVAL;
	for (i = 0; i < st->n_cpuid; i++)
		if (!st->cpuid[i])
			return -EINVAL;
	if (st->tsc_khz) {
		ret = has_cap(vcpu, KVM_CAP_GET_TSC_KHZ) ?
			      kvm_ioctl_val(vcpu->fd, KVM_GET_TSC_KHZ, 0) :
			      0;
		if (ret < 0)
			return ret;
		/* Another frequency needs TSC scaling. */
		if ((uint32_t)ret != st->tsc_khz &&
		    !has_cap(vcpu, KVM_CAP_TSC_CONTROL))
			return -EOPNOTSUPP;
	}
	return 0;
}

/* The KVM structures of a load, built before any of them is applied. */
struct vcpu_load {
	struct kvm_cpuid2 *cpuid;
	struct kvm_msrs *msrs;
	void *xsave; /* host-sized, or a struct kvm_fpu */
	struct kvm_xcrs xcrs;
	bool set_tsc_khz;
};

static int load_build(struct vcpu *vcpu, const Vmrun__VcpuState *st,
		      struct vcpu_load *l)
{
	size_t i, xsize = host_xsave_size(vcpu->vm);

	l->cpuid = calloc(1, sizeof(*l->cpuid) +
				     st->n_cpuid *
					     sizeof(struct kvm_cpuid_entry2));
	l->msrs = calloc(1, sizeof(*l->msrs) +
				    st->n_msrs * sizeof(struct kvm_msr_entry));
	l->xsave = calloc(1, st->xsave.len ? xsize : sizeof(struct kvm_fpu));
	if (!l->cpuid || !l->msrs || !l->xsave)
		return -ENOMEM;
	l->cpuid->nent = (uint32_t)st->n_cpuid;
	for (i = 0; i < st->n_cpuid; i++) {
		const Vmrun__X86CpuidEntry *m = st->cpuid[i];
		struct kvm_cpuid_entry2 *e = &l->cpuid->entries[i];

		e->function = m->function;
		e->index = m->index;
		e->flags = m->flags;
		e->eax = m->eax;
		e->ebx = m->ebx;
		e->ecx = m->ecx;
		e->edx = m->edx;
	}
	l->msrs->nmsrs = (uint32_t)st->n_msrs;
	for (i = 0; i < st->n_msrs; i++) {
		l->msrs->entries[i].index = st->msrs[i]->index;
		l->msrs->entries[i].data = st->msrs[i]->value;
	}
	if (st->xsave.len)
		memcpy(l->xsave, st->xsave.data, st->xsave.len);
	else
		memcpy(l->xsave, st->fpu.data, st->fpu.len);
	l->xcrs.nr_xcrs = (uint32_t)st->n_xcrs;
	for (i = 0; i < st->n_xcrs; i++) {
		l->xcrs.xcrs[i].xcr = st->xcrs[i]->xcr;
		l->xcrs.xcrs[i].value = st->xcrs[i]->value;
	}
	if (st->tsc_khz)
		l->set_tsc_khz = kvm_ioctl_val(vcpu->fd, KVM_GET_TSC_KHZ, 0) !=
				 (int)st->tsc_khz;
	return 0;
}

/* @m as a struct kvm_sregs (KVM_SET_SREGS's, or kvm_run's to stage):
 * an sregs2 message has no interrupt bitmap (its events carry it). */
static void sregs_from_msg(struct kvm_sregs *s, const Vmrun__X86Sregs *m)
{
	size_t i;

	memset(s, 0, sizeof(*s));
	SREGS_COMMON_FROM_MSG(s, m);
	for (i = 0; !m->sregs2 && i < m->n_interrupt_bitmap; i++)
		s->interrupt_bitmap[i] = m->interrupt_bitmap[i];
}

static int load_sregs(struct vcpu *vcpu, const Vmrun__X86Sregs *m)
{
	unsigned int i;

	if (m->sregs2) {
		struct kvm_sregs2 s;

		memset(&s, 0, sizeof(s));
		SREGS_COMMON_FROM_MSG(&s, m);
		s.flags = m->flags;
		for (i = 0; i < 4; i++)
			s.pdptrs[i] = m->pdptrs[i];
		return kvm_ioctl(vcpu->fd, KVM_SET_SREGS2, &s);
	} else {
		struct kvm_sregs s;

		sregs_from_msg(&s, m);
		return kvm_ioctl(vcpu->fd, KVM_SET_SREGS, &s);
	}
}

/*
 * A state made ready to be loaded again and again into the vCPU it was
 * checked against (a fuzzer's reset): every KVM structure built once.
 * CPUID and the TSC frequency are the vCPU's already and are not set
 * again (KVM refuses a CPUID change once a vCPU has run).
 */
struct x86_vcpu_reload {
	const Vmrun__VcpuState *st; /* borrowed: the sregs */
	struct vcpu_load l;
	struct kvm_msrs *batch[X86_STATE_MAX_MSRS / MSR_BATCH + 1];
	unsigned int nr_batches;
	struct kvm_regs regs;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	struct kvm_debugregs dr;
	/* Regs, sregs and events may be staged (see x86_vcpu_reload()). */
	bool can_stage;
	struct kvm_sregs sregs;
};

/* KVM_CAP_SYNC_REGS's sets a reload stages: all three or none. */
#define SYNC_SETS (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS)

/*
 * Whether @m can go through kvm_run's struct kvm_sregs, which has no
 * PDPTRs: only where they do not count (not PAE paging outside long
 * mode); elsewhere KVM_SET_SREGS2 loads them as saved.
 */
static bool sregs_stageable(const Vmrun__X86Sregs *m)
{
	bool pae_paging = (m->cr0 & (1ULL << 31)) && (m->cr4 & (1ULL << 5)) &&
			  !(m->efer & (1ULL << 10));

	return !m->sregs2 || !pae_paging;
}

void x86_vcpu_reload_free(struct x86_vcpu_reload *r)
{
	unsigned int i;

	if (!r)
		return;
	for (i = 0; i < r->nr_batches; i++)
		free(r->batch[i]);
	free(r->l.cpuid);
	free(r->l.msrs);
	free(r->l.xsave);
	free(r);
}

/*
 * KVM's wall clock MSRs are no state but a command: writing one makes KVM
 * write the host's wall clock into guest memory at that address, there
 * and then. A reload (a reset to a checkpoint) must not: it would put a
 * page back and then change it, under the reset's own feet (a verified
 * reset of a Linux guest found that page differing). Only a load into a
 * new VM passes them on (x86_vcpu_state_load()), as the guest's own
 * write would, so that the guest's wall clock address is KVM's.
 */
static bool wall_clock_msr(uint32_t index)
{
	return index == 0x11 /* MSR_KVM_WALL_CLOCK */ ||
	       index == 0x4b564d00; /* MSR_KVM_WALL_CLOCK_NEW */
}

/* Writes @st's wall clock MSRs (see wall_clock_msr()). */
static int load_wall_clock(struct vcpu *vcpu, const Vmrun__VcpuState *st)
{
	/* Room for two entries after the header (no struct after a
	 * flexible array member: a GNU extension clang warns about). */
	union {
		struct kvm_msrs h;
		uint8_t room[sizeof(struct kvm_msrs) +
			     2 * sizeof(struct kvm_msr_entry)];
	} m = { 0 };
	size_t i;
	int ret;

	for (i = 0; i < st->n_msrs && m.h.nmsrs < 2; i++)
		if (wall_clock_msr(st->msrs[i]->index) && st->msrs[i]->value) {
			m.h.entries[m.h.nmsrs].index = st->msrs[i]->index;
			m.h.entries[m.h.nmsrs++].data = st->msrs[i]->value;
		}
	if (!m.h.nmsrs)
		return 0;
	ret = kvm_ioctl(vcpu->fd, KVM_SET_MSRS, &m);
	return ret < 0 ? ret : (uint32_t)ret < m.h.nmsrs ? -EIO : 0;
}

int x86_vcpu_reload_prepare(struct vcpu *vcpu, const Vmrun__VcpuState *st,
			    struct x86_vcpu_reload **out)
{
	struct x86_vcpu_reload *r;
	size_t pos, k;
	int ret;

	ret = x86_vcpu_state_check(vcpu, st);
	if (ret < 0)
		return ret;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->st = st;
	ret = load_build(vcpu, st, &r->l);
	for (pos = 0; !ret && pos < r->l.msrs->nmsrs; pos += k) {
		struct kvm_msrs *b;
		size_t j;

		k = MIN(r->l.msrs->nmsrs - pos, (size_t)MSR_BATCH);
		b = calloc(1, sizeof(*b) + k * sizeof(b->entries[0]));
		if (!b) {
			ret = -ENOMEM;
			break;
		}
		for (j = 0; j < k; j++)
			if (!wall_clock_msr(r->l.msrs->entries[pos + j].index))
				b->entries[b->nmsrs++] =
					r->l.msrs->entries[pos + j];
		r->batch[r->nr_batches++] = b;
	}
	if (ret < 0) {
		x86_vcpu_reload_free(r);
		return ret;
	}
	regs_from_msg(&r->regs, st->regs);
	events_from_msg(&r->ev, st->events);
	memset(&r->dr, 0, sizeof(r->dr));
	memcpy(r->dr.db, st->debugregs->db, sizeof(r->dr.db));
	r->dr.dr6 = st->debugregs->dr6;
	r->dr.dr7 = st->debugregs->dr7;
	r->mp.mp_state = st->mp_state;
	if ((kvm_check_cap(vcpu->vm->vm_fd, KVM_CAP_SYNC_REGS) & SYNC_SETS) ==
		    SYNC_SETS &&
	    sregs_stageable(st->sregs)) {
		r->can_stage = true;
		sregs_from_msg(&r->sregs, st->sregs);
	}
	*out = r;
	return 0;
}

/*
 * Everything but CPUID and the TSC frequency (x86_vcpu_state_load() sets
 * those first). The order, and why:
 * - CPUID first: it decides which MSRs, XSAVE components and CR4 bits
 *   KVM accepts afterwards.
 * - The TSC frequency before any TSC value, so that the MSR_IA32_TSC
 *   written next is scaled at the frequency it was read at.
 * - sregs before MSRs: CR0/CR4/EFER and the APIC base (x2APIC mode) are
 *   in place when KVM checks MSR writes against them.
 * - XCRs before XSAVE, so XCR0 covers the components the area holds.
 * - regs after sregs; KVM_SET_REGS also drops a pending exception, so it
 *   must come before the events.
 * - The LAPIC after the APIC base (sregs) it is interpreted under.
 * - Events, then MP state last: KVM_SET_MP_STATE refuses INIT/SIPI
 *   states while the events say an INIT is latched (SMM), so it must see
 *   the restored events.
 *
 * On the vCPU's own thread (a fuzzer's reset inside an exit handler),
 * where KVM offers KVM_CAP_SYNC_REGS, the regs, sregs and events are
 * staged in kvm_run instead and KVM takes them on the KVM_RUN that goes
 * on, saving three calls (each costs a vCPU load and put; under PVM
 * about 9 us). KVM applies them (regs, sregs, events) after everything
 * else here, so the MSRs and the LAPIC are loaded under the CR0, CR4,
 * EFER and APIC base the execution left, and the MP state beside the
 * execution's events: the same as the checkpoint's unless the execution
 * changed them, and a reset that went wrong so is one --verify-reset
 * reports. Whatever reads or writes these through ioctls first applies
 * them (vcpu_apply_staged()). There too, a checkpoint's RUNNABLE MP state
 * is not loaded into a vCPU known to be runnable (an execution that ended
 * in an I/O exit, vcpu_known_runnable()).
 */
/* KVM's linear RIP (kvm_get_linear_rip()): CS base + RIP outside 64-bit mode. */
static uint64_t linear_rip(const struct kvm_regs *regs,
			   const struct kvm_sregs *sregs)
{
	if ((sregs->efer & (1ULL << 10)) && sregs->cs.l) /* EFER.LMA, CS.L */
		return regs->rip;
	return (uint32_t)(sregs->cs.base + regs->rip);
}

/* The sets KVM stores in kvm_run at each exit of a vCPU a reset staged. */
#define EXIT_SETS (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS)

/*
 * A reset inside the handler of the vCPU's own I/O exit (a fuzzer's
 * harness call) decides what becomes of that exit. KVM finishes an exit
 * on the next KVM_RUN, after it has applied staged registers. For an OUT
 * that KVM left to finish, that means skipping the instruction, but only
 * if RIP is still the OUT's (kvm_run holds the RIP of the exit); an OUT
 * KVM emulated was finished before the exit. So when the RIP the reset
 * stages is another, the exit is left to KVM, which then finishes
 * nothing: one KVM_RUN less per reset. Otherwise, and for IN and MMIO,
 * whose completion writes registers, it is finished first
 * (vcpu_complete_io()).
 */
int x86_vcpu_reload_settle(struct vcpu *vcpu, const struct x86_vcpu_reload *r)
{
	const struct kvm_run *run = vcpu->run;

	if (vcpu_self() != vcpu || !vcpu->io_pending)
		return 0;
	if (r->can_stage && run->exit_reason == KVM_EXIT_IO &&
	    run->io.direction == KVM_EXIT_IO_OUT &&
	    (vcpu->exit_sets & EXIT_SETS) == EXIT_SETS &&
	    linear_rip(&run->s.regs.regs, &run->s.regs.sregs) !=
		    linear_rip(&r->regs, &r->sregs)) {
		vcpu->io_pending = false;
		return 0;
	}
	return vcpu_complete_io(vcpu);
}

int x86_vcpu_reload(struct vcpu *vcpu, struct x86_vcpu_reload *r)
{
	bool stage = r->can_stage && vcpu_self() == vcpu;
	const char *step = "sregs";
	unsigned int i;
	int ret;

	ret = state_access_ok(vcpu);
	if (ret < 0)
		return ret;
	/* Where the caller did not settle it first. */
	ret = x86_vcpu_reload_settle(vcpu, r);
	if (ret < 0)
		return ret;
	/* What an earlier reload staged is replaced whole. */
	vcpu->run->kvm_dirty_regs = 0;
	if (!stage)
		ret = load_sregs(vcpu, r->st->sregs);
	for (i = 0; !ret && i < r->nr_batches; i++) {
		struct kvm_msrs *b = r->batch[i];

		step = "KVM_SET_MSRS";
		ret = kvm_ioctl(vcpu->fd, KVM_SET_MSRS, b);
		if (ret >= 0 && (uint32_t)ret < b->nmsrs) {
			/* A short count names the MSR KVM refused. */
			pr_err("vCPU %u: KVM refused MSR %#x = %#llx", vcpu->id,
			       b->entries[ret].index,
			       (unsigned long long)b->entries[ret].data);
			ret = -EIO;
		} else if (ret > 0) {
			ret = 0;
		}
	}
	if (!ret && r->l.xcrs.nr_xcrs) {
		step = "KVM_SET_XCRS";
		ret = kvm_ioctl(vcpu->fd, KVM_SET_XCRS, &r->l.xcrs);
	}
	if (!ret) {
		step = r->st->xsave.len ? "KVM_SET_XSAVE" : "KVM_SET_FPU";
		ret = kvm_ioctl(vcpu->fd,
				r->st->xsave.len ? KVM_SET_XSAVE : KVM_SET_FPU,
				r->l.xsave);
	}
	if (!ret && !stage) {
		step = "KVM_SET_REGS";
		ret = kvm_ioctl(vcpu->fd, KVM_SET_REGS, &r->regs);
	}
	if (!ret) {
		step = "KVM_SET_DEBUGREGS";
		ret = kvm_ioctl(vcpu->fd, KVM_SET_DEBUGREGS, &r->dr);
	}
	if (!ret && r->st->lapic.len) {
		step = "KVM_SET_LAPIC";
		ret = kvm_ioctl(vcpu->fd, KVM_SET_LAPIC, r->st->lapic.data);
	}
	if (!ret && !stage) {
		step = "KVM_SET_VCPU_EVENTS";
		ret = kvm_ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &r->ev);
	}
	/* Nothing to change, known without asking (one call less). */
	if (!ret && !(stage && r->mp.mp_state == KVM_MP_STATE_RUNNABLE &&
		      vcpu_known_runnable(vcpu))) {
		step = "KVM_SET_MP_STATE";
		ret = kvm_ioctl(vcpu->fd, KVM_SET_MP_STATE, &r->mp);
	}
	if (!ret && stage) {
		struct kvm_run *run = vcpu->run;

		run->s.regs.regs = r->regs;
		run->s.regs.sregs = r->sregs;
		run->s.regs.events = r->ev;
		__atomic_store_n(&run->kvm_dirty_regs, SYNC_SETS,
				 __ATOMIC_RELEASE);
		/* For the next reset's x86_vcpu_reload_settle(). */
		run->kvm_valid_regs = EXIT_SETS;
	}
	if (ret < 0)
		pr_err("vCPU %u: loading state, %s: %s", vcpu->id, step,
		       strerror(-ret));
	return ret < 0 ? ret : 0;
}

static int state_load(struct vcpu *vcpu, const Vmrun__VcpuState *st,
		      bool wall_clock)
{
	struct x86_vcpu_reload *r;
	const char *step = "KVM_SET_CPUID2";
	int ret;

	ret = state_access_ok(vcpu);
	if (!ret) /* it checks @st first */
		ret = x86_vcpu_reload_prepare(vcpu, st, &r);
	if (ret < 0)
		return ret;
	ret = kvm_ioctl(vcpu->fd, KVM_SET_CPUID2, r->l.cpuid);
	if (!ret && r->l.set_tsc_khz) {
		step = "KVM_SET_TSC_KHZ";
		ret = kvm_ioctl_val(vcpu->fd, KVM_SET_TSC_KHZ, st->tsc_khz);
	}
	if (ret < 0)
		pr_err("vCPU %u: loading state, %s: %s", vcpu->id, step,
		       strerror(-ret));
	else
		ret = x86_vcpu_reload(vcpu, r);
	if (!ret && wall_clock) {
		ret = load_wall_clock(vcpu, st);
		if (ret < 0)
			pr_err("vCPU %u: loading state, the wall clock MSRs: %s",
			       vcpu->id, strerror(-ret));
	}
	x86_vcpu_reload_free(r);
	return ret < 0 ? ret : 0;
}

int x86_vcpu_state_load(struct vcpu *vcpu, const Vmrun__VcpuState *st)
{
	return state_load(vcpu, st, true);
}

int x86_vcpu_state_load_keep_mem(struct vcpu *vcpu, const Vmrun__VcpuState *st)
{
	return state_load(vcpu, st, false);
}
