/* SPDX-License-Identifier: MIT */
/*
 * In-memory checkpoints and the dirty-only reset (see checkpoint.h).
 */
#include "snapshot/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernel/dev/dev.h"
#include "kernel/dirty.h"
#include "kernel/machine.h"
#include "kernel/mem.h"
#include "kernel/util/bitmap.h"
#include "kernel/util/compiler.h"
#include "kernel/util/log.h"
#include "kernel/vm.h"
#include "kernel/x86/vcpu_state.h"
#include "kernel/x86/vm_state.h"
#include "snapshot/state_diff.h"
#include "snapshot/vmsnap.h"

#define PAGE 4096u
/* MSRs that count with the host's clock. */
static const uint32_t clock_msrs[] = {
	0x10,	    /* IA32_TSC */
	0xe7,	    /* IA32_MPERF */
	0xe8,	    /* IA32_APERF */
	0x40000010, /* Hyper-V's VP runtime */
	0x40000020, /* Hyper-V's reference time counter */
};
#define LAPIC_TMCCT 0x390u /* the timer's current count */
#define XSAVE_HEADER 512u  /* XSTATE_BV, in the XSAVE area */
/*
 * SYSENTER_ESP and SYSENTER_EIP: for a guest whose CPUID says AMD, KVM on
 * AMD lets the guest's WRMSR reach the VMCB whole but keeps only the low
 * half when it sets them itself, so a reset cannot put back the high half
 * a Linux guest wrote there (an AMD CPU in long mode never uses it: it
 * has no SYSENTER there). The verify compares the low halves.
 */
#define MSR_SYSENTER_ESP 0x175u
#define MSR_SYSENTER_EIP 0x176u

struct dev_blob {
	uint8_t *data;
	size_t len;
	bool has;
};

struct checkpoint {
	struct machine *m; /* the one it resets, while it is registered */
	uint64_t *shared;  /* pages a save took from the RAM's bitmap */
	bool shared_any;
	int fd;
	const uint8_t *mem; /* PROT_READ mapping of fd */
	size_t size;
	uint64_t mem_pages;
	Vmrun__VmState *vms;
	unsigned int nr_cpus;
	Vmrun__VcpuState **cpus;
	struct x86_vcpu_reload **reload;
	unsigned int nr_devs;
	struct dev_blob *devs;
};

void checkpoint_detach(struct checkpoint *c)
{
	if (c->m)
		machine_dirty_unshare(c->m, c->shared);
	c->m = NULL;
}

void checkpoint_free(struct checkpoint *c)
{
	unsigned int i;

	if (!c)
		return;
	checkpoint_detach(c);
	bitmap_free(c->shared);
	for (i = 0; c->reload && i < c->nr_cpus; i++)
		x86_vcpu_reload_free(c->reload[i]);
	for (i = 0; c->cpus && i < c->nr_cpus; i++)
		if (c->cpus[i])
			x86_vcpu_state_free(c->cpus[i]);
	for (i = 0; c->devs && i < c->nr_devs; i++)
		free(c->devs[i].data);
	free(c->reload);
	free(c->cpus);
	free(c->devs);
	if (c->vms)
		x86_vm_state_free(c->vms);
	if (c->mem)
		munmap((void *)(uintptr_t)c->mem, c->size);
	if (c->fd >= 0)
		close(c->fd);
	free(c);
}

int checkpoint_memfd(const struct checkpoint *c)
{
	return c->fd;
}

uint64_t checkpoint_mem_pages(const struct checkpoint *c)
{
	return c->mem_pages;
}

static bool page_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;
	size_t i;

	for (i = 0; i < PAGE / 8; i += 4)
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3])
			return false;
	return true;
}

/* The RAM into a memfd, zero pages left as holes, then sealed. */
static int copy_ram(struct checkpoint *c, struct mem_seg *ram, char *err,
		    size_t errlen)
{
	const uint8_t *src = mem_seg_hva(ram);
	uint8_t *dst;
	size_t off;
	int ret;

	c->size = mem_seg_size(ram);
	c->fd = memfd_create("vmrun-checkpoint",
			     MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (c->fd < 0 || ftruncate(c->fd, (off_t)c->size) < 0)
		return err_printf(err, errlen, -errno,
				  "checkpoint memory (%zu MiB): %s",
				  c->size >> 20, strerror(errno));
	dst = mmap(NULL, c->size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
	if (dst == MAP_FAILED)
		return err_printf(err, errlen, -errno,
				  "mapping checkpoint memory: %s",
				  strerror(errno));
	/* Only the memfd's data extents: its holes were never written. */
	for (off = 0; off < c->size;) {
		off_t d = lseek(mem_seg_fd(ram), (off_t)off, SEEK_DATA);
		off_t h = d < 0 ? -1 : lseek(mem_seg_fd(ram), d, SEEK_HOLE);
		size_t end;

		if (d < 0 && errno == ENXIO)
			break;
		if (d < 0 || h < 0) { /* no SEEK_DATA: every page */
			d = (off_t)off;
			h = (off_t)c->size;
		}
		off = (size_t)d & ~(size_t)(PAGE - 1);
		end = MIN((size_t)h, c->size);
		for (; off < end; off += PAGE) {
			if (page_zero(src + off))
				continue;
			memcpy(dst + off, src + off, PAGE);
			c->mem_pages++;
		}
	}
	munmap(dst, c->size);
	ret = fcntl(c->fd, F_ADD_SEALS,
		    F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	if (ret < 0)
		return err_printf(err, errlen, -errno,
				  "sealing checkpoint memory: %s",
				  strerror(errno));
	c->mem = mmap(NULL, c->size, PROT_READ, MAP_SHARED, c->fd, 0);
	if (c->mem == MAP_FAILED) {
		c->mem = NULL;
		return err_printf(err, errlen, -errno,
				  "mapping checkpoint memory: %s",
				  strerror(errno));
	}
	return 0;
}

static void drop_page(void *opaque __unused, size_t page __unused)
{
}

/* The checkpoint becomes the second owner of @m's dirty pages. */
static int share_dirty(struct checkpoint *c, struct machine *m)
{
	if (!c->shared)
		c->shared = bitmap_alloc(c->size / PAGE);
	if (!c->shared)
		return -ENOMEM;
	checkpoint_detach(c);
	c->m = m;
	c->shared_any = false;
	machine_dirty_share(m, c->shared, &c->shared_any);
	machine_dirty_keep(m);
	return 0;
}

static int take_state(struct checkpoint *c, struct machine *m, char *err,
		      size_t errlen)
{
	struct vm *vm = machine_vm(m);
	unsigned int i;
	int ret;

	ret = x86_vm_state_save(vm, &c->vms);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "capturing the VM state: %s", strerror(-ret));
	c->nr_cpus = vm_nr_vcpus(vm);
	c->cpus = calloc(c->nr_cpus, sizeof(*c->cpus));
	c->reload = calloc(c->nr_cpus, sizeof(*c->reload));
	c->nr_devs = machine_nr_devs(m);
	c->devs = calloc(c->nr_devs + 1, sizeof(*c->devs));
	if (!c->cpus || !c->reload || !c->devs)
		return -ENOMEM;
	for (i = 0; i < c->nr_cpus; i++) {
		ret = x86_vcpu_state_save(vm_vcpu(vm, i), &c->cpus[i]);
		if (!ret)
			ret = x86_vcpu_reload_prepare(
				vm_vcpu(vm, i), c->cpus[i], &c->reload[i]);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "capturing vCPU %u's state: %s", i,
					  strerror(-ret));
	}
	for (i = 0; i < c->nr_devs; i++) {
		struct dev *d = machine_dev(m, i);
		int len;

		if (!d->ops->save || !d->ops->load)
			continue;
		len = d->ops->save(d, NULL, 0);
		if (len >= 0) {
			c->devs[i].data = malloc(len ? (size_t)len : 1);
			if (!c->devs[i].data)
				return -ENOMEM;
			len = d->ops->save(d, c->devs[i].data, (size_t)len);
		}
		if (len < 0)
			return err_printf(err, errlen, len,
					  "capturing device %s: %s",
					  d->ops->name, strerror(-len));
		c->devs[i].len = (size_t)len;
		c->devs[i].has = true;
	}
	return 0;
}

int checkpoint_take(struct machine *m, struct checkpoint **out, char *err,
		    size_t errlen)
{
	struct vm *vm = machine_vm(m);
	struct checkpoint *c;
	int ret;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = -1;
	ret = machine_mem_wait(m);
	if (ret < 0) {
		free(c);
		return err_printf(err, errlen, ret,
				  "the guest's memory never finished loading");
	}
	ret = machine_freeze(m);
	if (ret < 0) {
		free(c);
		return err_printf(err, errlen, ret, "freezing the VM: %s",
				  strerror(-ret));
	}
	/*
	 * The epoch begins now: with tracking newly on every page counts as
	 * written, which the checkpoint's copy answers, so drop that. With
	 * tracking on already, what is pending stays for its owner, and the
	 * first reset copies it back too (the same bytes).
	 */
	if (!dirty_active(vm)) {
		ret = dirty_start(vm);
		if (!ret)
			ret = dirty_sync(vm);
		if (!ret)
			mem_seg_dirty_take_each(machine_ram(m), drop_page,
						NULL);
		if (ret < 0)
			err_printf(err, errlen, ret,
				   "starting dirty tracking: %s",
				   strerror(-ret));
	}
	if (!ret)
		ret = copy_ram(c, machine_ram(m), err, errlen);
	if (!ret)
		ret = take_state(c, m, err, errlen);
	if (!ret)
		ret = share_dirty(c, m);
	machine_thaw(m);
	if (ret < 0) {
		if (!err[0])
			err_printf(err, errlen, ret, "taking a checkpoint: %s",
				   strerror(-ret));
		checkpoint_free(c);
		return ret;
	}
	*out = c;
	return 0;
}

struct copy_ctx {
	uint8_t *ram;
	const uint8_t *ck;
	unsigned int skipped;
};

static void copy_page(void *opaque, size_t page)
{
	struct copy_ctx *x = opaque;

	mem_copy_page(x->ram + page * PAGE, x->ck + page * PAGE);
}

/*
 * Fault injection for the tests that prove --verify-reset finds a bad
 * reset: VMRUN_TEST_RESET_FAULT=page leaves one written page as it is,
 * =device skips loading the device state.
 */
static int reset_fault(void)
{
	static int fault = -1;
	const char *e;

	if (fault < 0) {
		e = getenv("VMRUN_TEST_RESET_FAULT");
		fault = !e		     ? 0 :
			!strcmp(e, "page")   ? 1 :
			!strcmp(e, "device") ? 2 :
					       0;
	}
	return fault;
}

/* Leaves the first page that differs from the checkpoint as it is. */
static void skip_page(void *opaque, size_t page)
{
	struct copy_ctx *x = opaque;

	if (!x->skipped &&
	    memcmp(x->ram + page * PAGE, x->ck + page * PAGE, PAGE)) {
		x->skipped = 1;
		return;
	}
	copy_page(opaque, page);
}

int checkpoint_reset(struct checkpoint *c, struct machine *m,
		     struct checkpoint_reset_stats *st, char *err,
		     size_t errlen)
{
	struct vm *vm = machine_vm(m);
	struct copy_ctx x = { mem_seg_hva_load(machine_ram(m)), c->mem, 0 };
	int fault = reset_fault();
	uint64_t t0 = vmsnap_now_ns();
	const char *what = "";
	unsigned int i;
	size_t pages = 0;
	int ret;

	ret = machine_freeze(m);
	if (ret < 0)
		return err_printf(err, errlen, ret, "freezing the VM: %s",
				  strerror(-ret));
	/* The calling vCPU's exit, before any page is copied back. */
	for (i = 0; !ret && i < c->nr_cpus; i++) {
		what = "finishing the vCPU's exit";
		ret = x86_vcpu_reload_settle(vm_vcpu(vm, i), c->reload[i]);
	}
	if (!ret) {
		what = "harvesting dirty pages";
		ret = dirty_sync(vm);
	}
	if (!ret) {
		pages = mem_seg_dirty_take_each(
			machine_ram(m), fault == 1 ? skip_page : copy_page, &x);
		if (c->shared_any) {
			/* What a save took since; copying twice is harmless. */
			size_t p, n = c->size / PAGE;

			bitmap_for_each_set(p, c->shared, n) copy_page(&x, p);
			pages += bitmap_weight(c->shared, n);
			bitmap_zero(c->shared, n);
			c->shared_any = false;
		}
		what = "loading the VM state";
		ret = x86_vm_state_load(vm, c->vms);
	}
	for (i = 0; !ret && i < c->nr_devs; i++) {
		struct dev *d = machine_dev(m, i);

		if (!c->devs[i].has || fault == 2)
			continue;
		what = d->ops->name;
		ret = d->ops->load(d, c->devs[i].data, c->devs[i].len);
	}
	for (i = 0; !ret && i < c->nr_cpus; i++) {
		what = "loading a vCPU's state";
		ret = x86_vcpu_reload(vm_vcpu(vm, i), c->reload[i]);
	}
	machine_thaw(m);
	if (st) {
		st->pages = pages;
		st->ns = vmsnap_now_ns() - t0;
	}
	if (ret < 0)
		return err_printf(err, errlen, ret, "reset: %s: %s", what,
				  strerror(-ret));
	return 0;
}

/* The guest-physical address of RAM offset @off, for messages. */
struct gpa_find {
	uint64_t off, gpa;
	bool found;
};

static int gpa_of(struct mem_map *map, void *arg)
{
	struct gpa_find *g = arg;

	if (g->off >= mem_map_seg_off(map) &&
	    g->off < mem_map_seg_off(map) + mem_map_len(map)) {
		g->gpa = mem_map_gpa(map) + (g->off - mem_map_seg_off(map));
		g->found = true;
		return 1;
	}
	return 0;
}

/* Copies into @now the fields of @ck that follow the host's clock. */
static void mask_vcpu(Vmrun__VcpuState *now, const Vmrun__VcpuState *ck)
{
	size_t i, j;

	now->tsc = ck->tsc;
	for (i = 0; i < now->n_msrs; i++) {
		uint32_t idx = now->msrs[i]->index;
		bool clock = false;

		for (j = 0; j < ARRAY_SIZE(clock_msrs); j++)
			clock |= idx == clock_msrs[j];
		for (j = 0; clock && j < ck->n_msrs; j++)
			if (ck->msrs[j]->index == idx)
				now->msrs[i]->value = ck->msrs[j]->value;
		for (j = 0;
		     (idx == MSR_SYSENTER_ESP || idx == MSR_SYSENTER_EIP) &&
		     j < ck->n_msrs;
		     j++)
			if (ck->msrs[j]->index == idx &&
			    (uint32_t)ck->msrs[j]->value == now->msrs[i]->value)
				now->msrs[i]->value = ck->msrs[j]->value;
	}
	if (now->lapic.len == ck->lapic.len && now->lapic.len > LAPIC_TMCCT + 4)
		memcpy(now->lapic.data + LAPIC_TMCCT,
		       ck->lapic.data + LAPIC_TMCCT, 4);
	/*
	 * XSTATE_BV, the XSAVE header's first field, has a bit clear for each
	 * component in its initial state, but a CPU may keep a bit set for a
	 * component that holds its initial values again (an AMD EPYC under
	 * PVM reports SSE so after some resets, with the XMM registers all
	 * zero). KVM_GET_XSAVE writes a clear component's initial values
	 * into the area, so the components' own bytes say whether the state
	 * is the same, and the header's bits are the checkpoint's.
	 */
	if (now->xsave.len == ck->xsave.len &&
	    now->xsave.len >= XSAVE_HEADER + 8)
		memcpy(now->xsave.data + XSAVE_HEADER,
		       ck->xsave.data + XSAVE_HEADER, 8);
}

static void mask_vm(Vmrun__VmState *now, const Vmrun__VmState *ck)
{
	size_t i;

	if (now->clock && ck->clock) {
		now->clock->clock = ck->clock->clock;
		now->clock->flags = ck->clock->flags;
		now->clock->realtime = ck->clock->realtime;
		now->clock->host_tsc = ck->clock->host_tsc;
	}
	/* The PIT raises IRQ 0 (IOAPIC pins 0 and 2) on the host's clock,
	 * frozen vCPUs or not. */
	if (now->pic_master && ck->pic_master) {
		now->pic_master->irr = (now->pic_master->irr & ~1u) |
				       (ck->pic_master->irr & 1u);
		now->pic_master->last_irr = (now->pic_master->last_irr & ~1u) |
					    (ck->pic_master->last_irr & 1u);
	}
	if (now->ioapic && ck->ioapic)
		now->ioapic->irr =
			(now->ioapic->irr & ~5u) | (ck->ioapic->irr & 5u);
	if (now->pit && ck->pit && now->pit->n_channels == ck->pit->n_channels)
		for (i = 0; i < now->pit->n_channels; i++)
			now->pit->channels[i]->count_load_time =
				ck->pit->channels[i]->count_load_time;
}

static int verify_state(struct checkpoint *c, struct machine *m, char *what,
			size_t len)
{
	struct vm *vm = machine_vm(m);
	Vmrun__VcpuState *cpu;
	Vmrun__VmState *vms;
	char why[200];
	unsigned int i;
	int ret;

	ret = x86_vm_state_save(vm, &vms);
	if (ret < 0)
		return ret;
	mask_vm(vms, c->vms);
	ret = state_diff(&vms->base, &c->vms->base, why, sizeof(why)) ? 1 : 0;
	x86_vm_state_free(vms);
	if (ret)
		return err_printf(what, len, 1, "VM state: %s", why);
	for (i = 0; i < c->nr_cpus; i++) {
		ret = x86_vcpu_state_save(vm_vcpu(vm, i), &cpu);
		if (ret < 0)
			return ret;
		mask_vcpu(cpu, c->cpus[i]);
		ret = state_diff(&cpu->base, &c->cpus[i]->base, why,
				 sizeof(why)) ?
			      1 :
			      0;
		x86_vcpu_state_free(cpu);
		if (ret)
			return err_printf(what, len, 1, "vCPU %u: %s", i, why);
	}
	for (i = 0; i < c->nr_devs; i++) {
		struct dev *d = machine_dev(m, i);
		uint8_t *buf;
		int n;

		if (!c->devs[i].has)
			continue;
		n = d->ops->save(d, NULL, 0);
		if (n < 0)
			return n;
		buf = malloc(n ? (size_t)n : 1);
		if (!buf)
			return -ENOMEM;
		n = d->ops->save(d, buf, (size_t)n);
		ret = n < 0 ? n :
		      (size_t)n != c->devs[i].len ||
				      memcmp(buf, c->devs[i].data, (size_t)n) ?
			      1 :
			      0;
		free(buf);
		if (ret)
			return ret < 0 ? ret :
					 err_printf(
						 what, len, 1,
						 "device %s: its state differs",
						 d->ops->name);
	}
	return 0;
}

int checkpoint_verify(struct checkpoint *c, struct machine *m, char *what,
		      size_t len)
{
	const uint8_t *ram = mem_seg_hva(machine_ram(m));
	struct gpa_find g = { 0 };
	size_t off;
	int ret;

	what[0] = 0;
	ret = machine_freeze(m);
	if (ret < 0)
		return ret;
	for (off = 0; off < c->size; off += PAGE)
		if (memcmp(ram + off, c->mem + off, PAGE))
			break;
	if (off < c->size) {
		size_t b = 0, n = 0, k;

		while (ram[off + b] == c->mem[off + b])
			b++;
		for (k = b; k < PAGE; k++)
			n += ram[off + k] != c->mem[off + k];
		g.off = off;
		mem_for_each_map (vm_mem(machine_vm(m)), gpa_of, &g)
			;
		ret = err_printf(what, len, 1,
				 "memory: the page at guest-physical %#llx "
				 "(RAM offset %#zx) differs: %zu bytes, the "
				 "first at %#zx (%#x, checkpoint %#x)",
				 (unsigned long long)g.gpa, off, n, b,
				 ram[off + b], c->mem[off + b]);
	} else {
		ret = verify_state(c, m, what, len);
	}
	machine_thaw(m);
	return ret;
}

int checkpoint_attach(struct checkpoint *c, struct machine *m, char *err,
		      size_t errlen)
{
	struct vm *vm = machine_vm(m);
	unsigned int i;
	int ret;

	if (vm_nr_vcpus(vm) != c->nr_cpus || machine_nr_devs(m) != c->nr_devs ||
	    mem_seg_size(machine_ram(m)) != c->size)
		return err_printf(err, errlen, -EINVAL,
				  "the machine does not match the checkpoint");
	ret = x86_vm_state_load(vm, c->vms);
	if (ret < 0)
		return err_printf(err, errlen, ret, "loading the VM state: %s",
				  strerror(-ret));
	for (i = 0; i < c->nr_devs; i++) {
		struct dev *d = machine_dev(m, i);

		if (!c->devs[i].has)
			continue;
		ret = d->ops->load(d, c->devs[i].data, c->devs[i].len);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "loading device %s: %s", d->ops->name,
					  strerror(-ret));
	}
	for (i = 0; i < c->nr_cpus; i++) {
		struct x86_vcpu_reload *r;

		ret = x86_vcpu_state_load_keep_mem(vm_vcpu(vm, i), c->cpus[i]);
		if (!ret)
			ret = x86_vcpu_reload_prepare(vm_vcpu(vm, i),
						      c->cpus[i], &r);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "loading vCPU %u: %s", i,
					  strerror(-ret));
		x86_vcpu_reload_free(c->reload[i]);
		c->reload[i] = r;
	}
	ret = dirty_start(vm);
	if (!ret)
		ret = dirty_sync(vm);
	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "starting dirty tracking: %s",
				  strerror(-ret));
	mem_seg_dirty_take_each(machine_ram(m), drop_page, NULL);
	return share_dirty(c, m);
}
