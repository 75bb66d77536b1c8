/* SPDX-License-Identifier: MIT */
#include "kernel/x86/vm_state.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kvm_ioctl.h"
#include "kernel/util/log.h"
#include "kernel/vm_priv.h"

_Static_assert(sizeof(struct kvm_pit_state2) == 112, "kvm_pit_state2");
_Static_assert(sizeof(struct kvm_clock_data) == 48, "kvm_clock_data");

#define MAX_FEATURE_MSRS 1024

/*
 * The fields of struct kvm_pic_state (all bytes), and those of struct
 * kvm_pit_channel_state but count_load_time, with their maxima.
 * clang-format does not settle on X-macro lists, so they are kept as is.
 */
/* clang-format off */
#define PIC_FIELDS(X)							\
	X(last_irr) X(irr) X(imr) X(isr) X(priority_add) X(irq_base)	\
	X(read_reg_select) X(poll) X(special_mask) X(init_state)	\
	X(auto_eoi) X(rotate_on_auto_eoi) X(special_fully_nested_mode)	\
	X(init4) X(elcr) X(elcr_mask)

#define PIT_FIELDS(X)							\
	X(count, 0xffffffffu) X(latched_count, 0xffff)			\
	X(count_latched, 0xff) X(status_latched, 0xff) X(status, 0xff)	\
	X(read_state, 0xff) X(write_state, 0xff) X(write_latch, 0xff)	\
	X(rw_mode, 0xff) X(mode, 0xff) X(bcd, 0xff) X(gate, 0xff)
/* clang-format on */

static Vmrun__X86Pic *pic_to_msg(const struct kvm_pic_state *p)
{
	Vmrun__X86Pic *m = malloc(sizeof(*m));

	if (!m)
		return NULL;
	vmrun__x86_pic__init(m);
#define X(f) m->f = p->f;
	PIC_FIELDS(X)
#undef X
	return m;
}

static bool pic_ok(const Vmrun__X86Pic *m)
{
	if (!m)
		return false;
#define X(f)             \
	if (m->f > 0xff) \
		return false;
	PIC_FIELDS(X)
#undef X
	return true;
}

static void pic_from_msg(struct kvm_pic_state *p, const Vmrun__X86Pic *m)
{
#define X(f) p->f = (uint8_t)m->f;
	PIC_FIELDS(X)
#undef X
}

static int save_irqchip(struct vm *vm, Vmrun__VmState *st)
{
	struct kvm_irqchip c[3];
	Vmrun__X86Ioapic *io;
	unsigned int i;
	int ret;

	for (i = 0; i < 3; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		c[i].chip_id = i; /* PIC master, PIC slave, IOAPIC */
		ret = kvm_ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c[i]);
		if (ret < 0)
			return ret;
	}
	st->irqchip = true;
	st->pic_master = pic_to_msg(&c[0].chip.pic);
	st->pic_slave = pic_to_msg(&c[1].chip.pic);
	st->ioapic = io = malloc(sizeof(*io));
	if (!st->pic_master || !st->pic_slave || !io)
		return -ENOMEM;
	vmrun__x86_ioapic__init(io);
	io->base_address = c[2].chip.ioapic.base_address;
	io->ioregsel = c[2].chip.ioapic.ioregsel;
	io->id = c[2].chip.ioapic.id;
	io->irr = c[2].chip.ioapic.irr;
	io->redirtbl = calloc(KVM_IOAPIC_NUM_PINS, sizeof(uint64_t));
	if (!io->redirtbl)
		return -ENOMEM;
	io->n_redirtbl = KVM_IOAPIC_NUM_PINS;
	for (i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		io->redirtbl[i] = c[2].chip.ioapic.redirtbl[i].bits;
	return 0;
}

static int save_pit(struct vm *vm, Vmrun__VmState *st)
{
	struct kvm_pit_state2 p;
	Vmrun__X86Pit *m;
	unsigned int i;
	int ret;

	ret = kvm_ioctl(vm->vm_fd, KVM_GET_PIT2, &p);
	if (ret < 0)
		return ret;
	st->pit = m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	vmrun__x86_pit__init(m);
	m->flags = p.flags;
	m->channels = calloc(3, sizeof(*m->channels));
	if (!m->channels)
		return -ENOMEM;
	m->n_channels = 3;
	for (i = 0; i < 3; i++) {
		Vmrun__X86PitChannel *c = malloc(sizeof(*c));

		if (!c)
			return -ENOMEM;
		vmrun__x86_pit_channel__init(c);
		m->channels[i] = c;
#define X(f, max) c->f = p.channels[i].f;
		PIT_FIELDS(X)
#undef X
		c->count_load_time = p.channels[i].count_load_time;
	}
	return 0;
}

/* The feature MSRs and their values on this host (KVM_GET_MSRS on /dev/kvm). */
static int save_feature_msrs(struct vm *vm, Vmrun__VmState *st)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *l = NULL;
	struct kvm_msrs *v = NULL;
	uint32_t i;
	int ret;

	if (kvm_check_cap(vm->kvm_fd, KVM_CAP_GET_MSR_FEATURES) <= 0)
		return 0;
	ret = kvm_ioctl(vm->kvm_fd, KVM_GET_MSR_FEATURE_INDEX_LIST, &probe);
	if (ret < 0 && ret != -E2BIG)
		return ret;
	if (probe.nmsrs > MAX_FEATURE_MSRS)
		return -E2BIG;
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
	v = calloc(1, sizeof(*v) + probe.nmsrs * sizeof(v->entries[0]));
	st->feature_msrs = calloc(probe.nmsrs + 1, sizeof(*st->feature_msrs));
	if (!l || !v || !st->feature_msrs) {
		ret = -ENOMEM;
		goto out;
	}
	l->nmsrs = probe.nmsrs;
	ret = kvm_ioctl(vm->kvm_fd, KVM_GET_MSR_FEATURE_INDEX_LIST, l);
	if (ret < 0)
		goto out;
	v->nmsrs = l->nmsrs;
	for (i = 0; i < l->nmsrs; i++)
		v->entries[i].index = l->indices[i];
	ret = kvm_ioctl(vm->kvm_fd, KVM_GET_MSRS, v);
	if (ret < 0)
		goto out;
	/* Those read are kept; KVM stops at the first it cannot read. */
	for (i = 0; i < (uint32_t)ret; i++) {
		Vmrun__X86Msr *m = malloc(sizeof(*m));

		if (!m) {
			ret = -ENOMEM;
			goto out;
		}
		vmrun__x86_msr__init(m);
		m->index = v->entries[i].index;
		m->value = v->entries[i].data;
		st->feature_msrs[st->n_feature_msrs++] = m;
	}
	ret = 0;
out:
	free(l);
	free(v);
	return ret;
}

void x86_vm_state_free(Vmrun__VmState *st)
{
	/* Built with malloc(), like an unpacked message: see vcpu_state.c. */
	if (st)
		vmrun__vm_state__free_unpacked(st, NULL);
}

int x86_vm_state_save(struct vm *vm, Vmrun__VmState **out)
{
	struct kvm_clock_data clk;
	Vmrun__VmState *st;
	int ret;

	if (vm_vcpus_may_run(vm))
		return -EBUSY;
	st = malloc(sizeof(*st));
	if (!st)
		return -ENOMEM;
	vmrun__vm_state__init(st);
	ret = vm->irqchip ? save_irqchip(vm, st) : 0;
	if (!ret && vm->cfg.pit)
		ret = save_pit(vm, st);
	if (!ret) {
		memset(&clk, 0, sizeof(clk));
		ret = kvm_ioctl(vm->vm_fd, KVM_GET_CLOCK, &clk);
	}
	if (!ret) {
		st->clock = malloc(sizeof(*st->clock));
		ret = st->clock ? 0 : -ENOMEM;
	}
	if (!ret) {
		vmrun__x86_clock__init(st->clock);
		st->clock->clock = clk.clock;
		st->clock->flags = clk.flags;
		st->clock->realtime = clk.realtime;
		st->clock->host_tsc = clk.host_tsc;
		ret = save_feature_msrs(vm, st);
	}
	if (ret < 0) {
		pr_err("capturing VM state: %s", strerror(-ret));
		x86_vm_state_free(st);
		return ret;
	}
	*out = st;
	return 0;
}

/* Logs why a message is refused; evaluates to -EINVAL. */
#define BAD(what) (pr_warn("VM state refused: %s", what), -EINVAL)

static int vm_state_check(struct vm *vm, const Vmrun__VmState *st)
{
	const Vmrun__X86Ioapic *io = st->ioapic;
	size_t i;

	if (st->irqchip != vm->irqchip)
		return BAD("irqchip presence differs from this VM");
	if (!st->clock)
		return BAD("no clock");
	if (st->n_feature_msrs > MAX_FEATURE_MSRS)
		return BAD("too many feature MSRs");
	if (st->irqchip && (!pic_ok(st->pic_master) || !pic_ok(st->pic_slave) ||
			    !io || io->n_redirtbl != KVM_IOAPIC_NUM_PINS))
		return BAD("PIC or IOAPIC missing or out of range");
	if (!st->irqchip && (st->pic_master || st->pic_slave || io))
		return BAD("PIC or IOAPIC without an irqchip");
	if (!st->pit != !vm->cfg.pit)
		return BAD("PIT presence differs from this VM");
	if (!st->pit)
		return 0;
	if (st->pit->n_channels != 3 ||
	    (st->pit->flags & ~(uint32_t)(KVM_PIT_FLAGS_HPET_LEGACY |
					  KVM_PIT_FLAGS_SPEAKER_DATA_ON)))
		return BAD("PIT channels or flags");
	for (i = 0; i < 3; i++) {
		const Vmrun__X86PitChannel *c = st->pit->channels[i];

		if (!c)
			return BAD("PIT channel missing");
#define X(f, max)                   \
	if (c->f > (uint32_t)(max)) \
		return BAD("PIT channel field " #f " out of range");
		PIT_FIELDS(X)
#undef X
		/*
		 * A count of 0 means 0x10000 (kvm_pit_load_count()); a channel
		 * never programmed has mode 0xff (kvm_pit_reset()).
		 */
		if (c->count > 0x10000 || (c->mode > 5 && c->mode != 0xff) ||
		    c->rw_mode > 3)
			return BAD("PIT count, mode or rw_mode");
	}
	return 0;
}

int x86_vm_state_load(struct vm *vm, const Vmrun__VmState *st)
{
	struct kvm_irqchip c;
	struct kvm_pit_state2 p;
	struct kvm_clock_data clk;
	const char *step = "";
	unsigned int i;
	int ret;

	if (vm_vcpus_may_run(vm))
		return -EBUSY;
	if (!st)
		return -EINVAL;
	ret = vm_state_check(vm, st);
	if (ret < 0)
		return ret;
	for (i = 0; st->irqchip && !ret && i < 3; i++) {
		memset(&c, 0, sizeof(c));
		c.chip_id = i;
		if (i < 2) {
			pic_from_msg(&c.chip.pic,
				     i ? st->pic_slave : st->pic_master);
		} else {
			const Vmrun__X86Ioapic *io = st->ioapic;
			unsigned int j;

			c.chip.ioapic.base_address = io->base_address;
			c.chip.ioapic.ioregsel = io->ioregsel;
			c.chip.ioapic.id = io->id;
			c.chip.ioapic.irr = io->irr;
			for (j = 0; j < KVM_IOAPIC_NUM_PINS; j++)
				c.chip.ioapic.redirtbl[j].bits =
					io->redirtbl[j];
		}
		step = "KVM_SET_IRQCHIP";
		ret = kvm_ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &c);
	}
	if (!ret && st->pit) {
		memset(&p, 0, sizeof(p));
		p.flags = st->pit->flags;
		for (i = 0; i < 3; i++) {
			const Vmrun__X86PitChannel *m = st->pit->channels[i];

#define X(f, max) p.channels[i].f = m->f;
			PIT_FIELDS(X)
#undef X
		}
		step = "KVM_SET_PIT2";
		ret = kvm_ioctl(vm->vm_fd, KVM_SET_PIT2, &p);
	}
	if (!ret) {
		memset(&clk, 0, sizeof(clk));
		clk.clock = st->clock->clock;
		step = "KVM_SET_CLOCK";
		ret = kvm_ioctl(vm->vm_fd, KVM_SET_CLOCK, &clk);
	}
	if (ret < 0)
		pr_err("loading VM state, %s: %s", step, strerror(-ret));
	return ret < 0 ? ret : 0;
}
