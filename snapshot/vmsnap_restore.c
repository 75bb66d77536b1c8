/* SPDX-License-Identifier: MIT */
/* Restoring a machine from an image: see vmsnap.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernel/dev/dev.h"
#include "kernel/mem.h"
#include "kernel/util/bitmap.h"
#include "kernel/util/log.h"
#include "kernel/vm.h"
#include "kernel/x86/vcpu_arch.h"
#include "kernel/x86/vcpu_state.h"
#include "kernel/x86/vm_state.h"
#include "machine.pb-c.h"
#include "snapshot/stream.h"
#include "snapshot/vmsnap.h"
#include "snapshot/vmsnap_priv.h"

#define MAX_DEVS 32
#define PROGRESS_PAGES 16384u

struct rctx {
	const struct vmsnap_restore_opts *o;
	Vmrun__MachineConfig *mc;
	Vmrun__MachineConfig *disks; /* a live image's disks at its end */
	bool live;		     /* saved live (VMSNAP_FLAG_LIVE) */
	Vmrun__MemLayout *layout;
	Vmrun__VmState *vms;
	Vmrun__VcpuState **cpus; /* mc->nr_vcpus of them */
	Vmrun__DeviceState *devs[MAX_DEVS];
	unsigned int nr_devs;
	uint64_t pages, next_report, total_pages;
	/* Progress in image bytes: links read so far, the one being read. */
	uint64_t bytes_before, bytes_total;
	struct stream *cur;
	struct vmsnap_lazy *lazy; /* lazy restore: the index being built */
	unsigned int link;	  /* the link being indexed */
	char *err;
	size_t errlen;
};

static int bad(struct rctx *c, const char *what)
{
	return err_printf(c->err, c->errlen, -EINVAL, "%s", what);
}

static int on_machine(struct rctx *c, const void *data, size_t len)
{
	Vmrun__MachineConfig *mc;

	if (c->mc)
		return bad(c, "two machine sections");
	mc = vmrun__machine_config__unpack(NULL, len, data);
	if (!mc)
		return bad(c, "the machine section does not decode");
	c->mc = mc;
	if (!mc->nr_vcpus || mc->nr_vcpus > MACHINE_MAX_CPUS)
		return err_printf(c->err, c->errlen, -EINVAL,
				  "%u vCPUs: this vmrun runs 1..%d",
				  mc->nr_vcpus, MACHINE_MAX_CPUS);
	if (mc->n_disks > MACHINE_MAX_DISKS || mc->n_nets > MACHINE_MAX_NETS)
		return bad(c, "more disks or network cards than vmrun has");
	if (!mc->mem_bytes || mc->mem_bytes % SZ_2M ||
	    mc->mem_bytes > (1ULL << 40))
		return err_printf(c->err, c->errlen, -EINVAL,
				  "memory of %llu bytes is out of range",
				  (unsigned long long)mc->mem_bytes);
	if (c->o->want_mem && c->o->want_mem != mc->mem_bytes)
		return err_printf(
			c->err, c->errlen, -EINVAL,
			"the machine has %llu MiB of memory, this side "
			"was given %llu MiB",
			(unsigned long long)(mc->mem_bytes >> 20),
			(unsigned long long)(c->o->want_mem >> 20));
	if (c->o->want_cpus && c->o->want_cpus != mc->nr_vcpus)
		return err_printf(c->err, c->errlen, -EINVAL,
				  "the machine has %u vCPUs, this side was "
				  "given %u",
				  mc->nr_vcpus, c->o->want_cpus);
	c->cpus = calloc(mc->nr_vcpus, sizeof(*c->cpus));
	c->total_pages = mc->mem_bytes / PAGE_SIZE;
	return c->cpus ? 0 : -ENOMEM;
}

static int on_vcpu(struct rctx *c, const void *data, size_t len)
{
	Vmrun__VcpuSection *vs;
	Vmrun__VcpuState *st;
	int ret = 0;

	if (!c->mc)
		return bad(c, "a vCPU section before the machine section");
	vs = vmrun__vcpu_section__unpack(NULL, len, data);
	if (!vs)
		return bad(c, "a vCPU section does not decode");
	if (vs->id >= c->mc->nr_vcpus || c->cpus[vs->id]) {
		ret = err_printf(c->err, c->errlen, -EINVAL,
				 "vCPU section %u: %s", vs->id,
				 vs->id >= c->mc->nr_vcpus ? "no such vCPU" :
							     "given twice");
		goto out;
	}
	st = vmrun__vcpu_state__unpack(NULL, vs->state.len, vs->state.data);
	if (!st) {
		ret = err_printf(c->err, c->errlen, -EINVAL,
				 "vCPU %u's state does not decode", vs->id);
		goto out;
	}
	c->cpus[vs->id] = st;
out:
	vmrun__vcpu_section__free_unpacked(vs, NULL);
	return ret;
}

static int on_state(void *opaque, uint32_t type, const void *data, size_t len)
{
	struct rctx *c = opaque;
	Vmrun__DeviceState *ds;

	switch (type) {
	case VMSNAP_STATE_MACHINE:
		return on_machine(c, data, len);
	case VMSNAP_STATE_VM:
		if (c->vms)
			return bad(c, "two VM state sections");
		c->vms = vmrun__vm_state__unpack(NULL, len, data);
		return c->vms ? 0 : bad(c, "the VM state does not decode");
	case VMSNAP_STATE_VCPU:
		return on_vcpu(c, data, len);
	case VMSNAP_STATE_DISKS:
		if (c->disks || !c->mc)
			return bad(c, "a second disks section, or one before "
				      "the machine section");
		c->disks = vmrun__machine_config__unpack(NULL, len, data);
		if (!c->disks)
			return bad(c, "the disks section does not decode");
		if (c->disks->n_disks != c->mc->n_disks)
			return bad(c, "the disks section and the machine "
				      "section disagree");
		return 0;
	case VMSNAP_STATE_DEVICE:
		if (c->nr_devs == MAX_DEVS)
			return bad(c, "too many device sections");
		ds = vmrun__device_state__unpack(NULL, len, data);
		if (!ds)
			return bad(c, "a device section does not decode");
		c->devs[c->nr_devs++] = ds;
		return 0;
	default:
		return err_printf(c->err, c->errlen, -EINVAL,
				  "unknown state section type %u", type);
	}
}

static int on_layout(void *opaque, uint32_t type, const void *data, size_t len)
{
	struct rctx *c = opaque;

	if (type != VMSNAP_LAYOUT_MEM)
		return err_printf(c->err, c->errlen, -EINVAL,
				  "unknown layout type %u", type);
	if (!c->mc)
		return bad(c, "the memory layout before the machine section");
	if (c->layout)
		return bad(c, "two memory layouts");
	c->layout = vmrun__mem_layout__unpack(NULL, len, data);
	if (!c->layout)
		return bad(c, "the memory layout does not decode");
	if (c->layout->n_segments != 1 || c->layout->segments[0]->id != 0 ||
	    c->layout->segments[0]->size != c->mc->mem_bytes)
		return bad(
			c,
			"the memory layout is not one RAM segment of the machine's size");
	return 0;
}

static int on_pages(void *opaque, uint32_t seg __unused,
		    uint64_t first __unused, uint64_t nr,
		    const void *data __unused, uint64_t file_off __unused)
{
	struct rctx *c = opaque;

	c->pages += nr;
	if (c->o->consumed)
		c->o->consumed(c->o->consumed_opaque,
			       stream_bytes_read(c->cur));
	if (c->o->progress && c->pages >= c->next_report) {
		uint64_t at = c->bytes_before + stream_bytes_read(c->cur);

		c->o->progress(c->o->opaque, MIN(at, c->bytes_total),
			       c->bytes_total);
		c->next_report = c->pages + PROGRESS_PAGES;
	}
	return 0;
}

static int on_batch(void *opaque, const struct image_batch *b)
{
	struct rctx *c = opaque;

	c->pages += b->nr_pages;
	return vmsnap_lazy_add_batch(c->lazy, c->link, b);
}

static const char *reg_name(uint32_t reg)
{
	static const char *const n[] = { "EAX", "EBX", "ECX", "EDX" };

	return reg < 4 ? n[reg] : "?";
}

static uint32_t word_of(const struct kvm_cpuid2 *c, const Vmrun__CpuidWord *w)
{
	uint32_t j, have = 0;

	for (j = 0; c && j < c->nent; j++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[j];

		/* The index counts only where KVM says it does. */
		if (e->function != w->leaf ||
		    ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) &&
		     e->index != w->subleaf))
			continue;
		have = w->reg == 0 ? e->eax :
		       w->reg == 1 ? e->ebx :
		       w->reg == 2 ? e->ecx :
				     e->edx;
	}
	return have;
}

/*
 * The header's CPU features against what this host's KVM supports
 * (KVM_GET_SUPPORTED_CPUID) or gives a vCPU set up by vmrun (@given:
 * vCPU 0 of the machine built for the restore, before it ever runs).
 */
static int check_features(const struct image_header *h,
			  const struct kvm_cpuid2 *given, char *err,
			  size_t errlen)
{
	const struct kvm_cpuid2 *sup;
	Vmrun__CpuFeatures *f;
	size_t i;
	int kfd, ret;

	f = vmrun__cpu_features__unpack(NULL, h->cpu_features_len,
					h->cpu_features);
	if (!f)
		return err_printf(err, errlen, -EINVAL,
				  "the header's CPU features do not decode");
	kfd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kfd < 0) {
		ret = -errno;
		err_printf(err, errlen, ret, "/dev/kvm: %s", strerror(-ret));
		goto out;
	}
	ret = x86_supported_cpuid(kfd, &sup);
	close(kfd);
	if (ret < 0) {
		err_printf(err, errlen, ret, "KVM_GET_SUPPORTED_CPUID: %s",
			   strerror(-ret));
		goto out;
	}
	for (i = 0; i < f->n_words && !ret; i++) {
		const Vmrun__CpuidWord *w = f->words[i];
		uint32_t have = word_of(sup, w) | word_of(given, w), missing;

		missing = w->bits & ~have &
			  ~vmsnap_feature_ignore(w->leaf, w->subleaf, w->reg);
		if (missing)
			ret = err_printf(
				err, errlen, -EINVAL,
				"the guest was given CPU features this host's KVM lacks: CPUID %#x.%u %s bits %#x (model: %s)",
				w->leaf, w->subleaf, reg_name(w->reg), missing,
				h->vcpu_model ? h->vcpu_model : "?");
	}
out:
	vmrun__cpu_features__free_unpacked(f, NULL);
	return ret;
}

/* check_features() with the CPUID vCPU 0 of @m was given. */
static int check_machine_features(const struct image_header *h,
				  struct machine *m, char *err, size_t errlen)
{
	struct kvm_cpuid2 *given = NULL;
	int ret = x86_vcpu_cpuid(vm_vcpu(machine_vm(m), 0), &given);

	if (ret < 0)
		return err_printf(err, errlen, ret, "KVM_GET_CPUID2: %s",
				  strerror(-ret));
	ret = check_features(h, given, err, errlen);
	free(given);
	return ret;
}

/*
 * The --disk and --net options against the image, and unless @counts_only
 * each disk against what it was at the save: the disks section of a live
 * image (its end), else the machine section.
 */
static int check_disks(struct rctx *c, bool counts_only, char *err,
		       size_t errlen)
{
	const struct vmsnap_restore_opts *o = c->o;
	const Vmrun__MachineConfig *at = c->disks ? c->disks : c->mc;
	unsigned int i;
	int ret;

	for (i = 0; i < MACHINE_MAX_DISKS; i++)
		if (o->disks[i] && i >= c->mc->n_disks)
			return err_printf(err, errlen, -EINVAL,
					  "--disk %s: the image has %zu disks",
					  o->disks[i], c->mc->n_disks);
	for (i = 0; i < MACHINE_MAX_NETS; i++)
		if (o->nets[i] && i >= c->mc->n_nets)
			return err_printf(
				err, errlen, -EINVAL,
				"--net %s: the image has %zu network cards",
				o->nets[i], c->mc->n_nets);
	for (i = 0; !counts_only && i < c->mc->n_disks; i++) {
		const Vmrun__DiskInfo *d = at->disks[i];
		const char *path =
			o->disks[i] ? o->disks[i] : c->mc->disks[i]->path;
		Vmrun__DiskInfo now;

		vmrun__disk_info__init(&now);
		ret = vmsnap_disk_info(path, &now);
		if (ret < 0)
			return err_printf(err, errlen, -EINVAL, "disk %s: %s",
					  path, strerror(-ret));
		if (o->disk_changed_ok)
			continue;
		if (now.size != d->size)
			return err_printf(
				err, errlen, -EINVAL,
				"disk %s: %llu bytes, %llu at the save; --disk-changed-ok uses it anyway",
				path, (unsigned long long)now.size,
				(unsigned long long)d->size);
		if (now.mtime_ns != d->mtime_ns)
			return err_printf(
				err, errlen, -EINVAL,
				"disk %s: modified since the save; --disk-changed-ok uses it anyway",
				path);
	}
	return 0;
}

/* Do two layouts place the same segments at the same guest addresses? */
static bool maps_equal(const Vmrun__MemLayout *x, const Vmrun__MemLayout *y)
{
	size_t i;

	if (x->n_maps != y->n_maps)
		return false;
	for (i = 0; i < x->n_maps; i++) {
		const Vmrun__MemMap *a = x->maps[i], *b = y->maps[i];

		if (a->segment != b->segment || a->gpa != b->gpa ||
		    a->size != b->size || a->seg_offset != b->seg_offset)
			return false;
	}
	return true;
}

/* Builds the machine the image describes, its RAM still zero. */
static int build(struct rctx *c, struct machine **out, char *err, size_t errlen)
{
	const Vmrun__MachineConfig *mc = c->mc;
	struct machine_config cfg = { 0 };
	Vmrun__MemSegment seg, *segp;
	struct layout_acc a;
	Vmrun__MemLayout l;
	struct machine *m;
	unsigned int i;
	int ret;

	/* A live image's disks are as its end says, after the pages. */
	ret = check_disks(c, c->live, err, errlen);
	if (ret < 0)
		return ret;
	cfg.mem = mc->mem_bytes;
	cfg.cpus = mc->nr_vcpus;
	cfg.cmdline = mc->cmdline;
	cfg.console = c->o->console ? c->o->console : "stdio";
	cfg.rng = mc->rng;
	cfg.dirty = mc->dirty_ring ? DIRTY_MODE_RING : DIRTY_MODE_LOG;
	cfg.restore = true;
	cfg.nr_disks = (unsigned int)mc->n_disks;
	for (i = 0; i < cfg.nr_disks; i++)
		cfg.disks[i] =
			c->o->disks[i] ? c->o->disks[i] : mc->disks[i]->path;
	cfg.nr_nets = (unsigned int)mc->n_nets;
	for (i = 0; i < cfg.nr_nets; i++)
		cfg.nets[i] = c->o->nets[i] ? c->o->nets[i] : mc->nets[i];
	ret = machine_create(&cfg, &m, err, errlen);
	if (ret < 0)
		return ret;
	/* The same build gives the same layout; anything else is refused. */
	ret = vmsnap_layout(m, &a, &l, &seg, &segp);
	if (!ret && !maps_equal(&l, c->layout))
		ret = -EINVAL;
	if (ret < 0) {
		machine_destroy(m);
		return err_printf(
			err, errlen, -EINVAL,
			"the image's memory layout is not the one vmrun builds for %llu MiB",
			(unsigned long long)(mc->mem_bytes >> 20));
	}
	*out = m;
	return 0;
}

/* Everything read: is it complete, and does it fit the built machine? */
static int load_state(struct rctx *c, struct machine *m, char *err,
		      size_t errlen)
{
	struct vm *vm = machine_vm(m);
	unsigned int i, n = machine_nr_devs(m);
	int ret;

	if (!c->vms)
		return err_printf(err, errlen, -EINVAL, "no VM state section");
	for (i = 0; i < c->mc->nr_vcpus; i++)
		if (!c->cpus[i])
			return err_printf(err, errlen, -EINVAL,
					  "no state for vCPU %u", i);
	if (c->nr_devs != n)
		return err_printf(err, errlen, -EINVAL,
				  "%u device sections for %u devices",
				  c->nr_devs, n);
	for (i = 0; i < n; i++) {
		const Vmrun__DeviceState *ds = c->devs[i];
		const struct dev *d = machine_dev(m, i);

		if (ds->index != i || strcmp(ds->name, d->ops->name) ||
		    strcmp(ds->type, d->ops->state_type))
			return err_printf(
				err, errlen, -EINVAL,
				"device section %u is %s (%s); the machine has %s (%s) there",
				i, ds->name, ds->type, d->ops->name,
				d->ops->state_type);
	}
	for (i = 0; i < c->mc->nr_vcpus; i++) {
		ret = x86_vcpu_state_check(vm_vcpu(vm, i), c->cpus[i]);
		if (ret < 0)
			return err_printf(
				err, errlen, ret == -EOPNOTSUPP ? -EINVAL : ret,
				"vCPU %u's state: %s", i,
				ret == -EOPNOTSUPP ?
					"this host's KVM cannot take it" :
					"refused");
	}
	ret = x86_vm_state_load(vm, c->vms);
	if (ret < 0)
		return err_printf(err, errlen, ret, "loading the VM state: %s",
				  strerror(-ret));
	for (i = 0; i < n; i++) {
		struct dev *d = machine_dev(m, i);

		if (!d->ops->load)
			continue;
		ret = d->ops->load(d, c->devs[i]->data.data,
				   c->devs[i]->data.len);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "loading device %s: %s", d->ops->name,
					  strerror(-ret));
	}
	for (i = 0; i < c->mc->nr_vcpus; i++) {
		ret = x86_vcpu_state_load(vm_vcpu(vm, i), c->cpus[i]);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "loading vCPU %u: %s", i,
					  strerror(-ret));
	}
	return 0;
}

static void rctx_free(struct rctx *c)
{
	unsigned int i;

	if (c->cpus)
		for (i = 0; i < c->mc->nr_vcpus; i++)
			if (c->cpus[i])
				x86_vcpu_state_free(c->cpus[i]);
	free(c->cpus);
	for (i = 0; i < c->nr_devs; i++)
		vmrun__device_state__free_unpacked(c->devs[i], NULL);
	if (c->vms)
		x86_vm_state_free(c->vms);
	if (c->layout)
		vmrun__mem_layout__free_unpacked(c->layout, NULL);
	if (c->mc)
		vmrun__machine_config__free_unpacked(c->mc, NULL);
	if (c->disks)
		vmrun__machine_config__free_unpacked(c->disks, NULL);
}

/* A base of the chain: only its pages count, and its layout must agree. */
struct bctx {
	struct rctx *c;
	bool layout_ok;
};

static int base_on_layout(void *opaque, uint32_t type, const void *data,
			  size_t len)
{
	struct bctx *b = opaque;
	const Vmrun__MemLayout *l = b->c->layout;
	Vmrun__MemLayout *x;
	bool same;
	size_t i;

	if (type != VMSNAP_LAYOUT_MEM || b->layout_ok)
		return bad(b->c, "a base image has a second or unknown layout");
	x = vmrun__mem_layout__unpack(NULL, len, data);
	if (!x)
		return bad(b->c,
			   "a base image's memory layout does not decode");
	same = x->n_segments == l->n_segments && maps_equal(x, l);
	for (i = 0; same && i < x->n_segments; i++)
		same = x->segments[i]->id == l->segments[i]->id &&
		       x->segments[i]->size == l->segments[i]->size;
	vmrun__mem_layout__free_unpacked(x, NULL);
	b->layout_ok = same;
	return same ? 0 :
		      bad(b->c,
			  "a base image's memory layout differs from the newest image's");
}

static int base_on_pages(void *opaque, uint32_t seg, uint64_t first,
			 uint64_t nr, const void *data, uint64_t file_off)
{
	struct bctx *b = opaque;

	return on_pages(b->c, seg, first, nr, data, file_off);
}

static int base_on_batch(void *opaque, const struct image_batch *batch)
{
	struct bctx *b = opaque;

	return on_batch(b->c, batch);
}

/* One link of the chain, open with its header read. */
struct link {
	struct stream *s;
	struct image *img;
	const struct image_header *h;
	char path[4096];
};

static void link_close(struct link *l)
{
	image_destroy(l->img);
	stream_close(l->s);
	l->img = NULL;
	l->s = NULL;
}

static uint64_t link_size(const struct link *l)
{
	struct stat sb;

	return stat(l->path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* Opens the link at @path, or with @s (which it then owns) that stream,
 * named @path in messages. */
static int link_open(struct link *l, const char *path, struct stream *s,
		     unsigned int threads, char *err, size_t errlen)
{
	int ret = 0;

	snprintf(l->path, sizeof(l->path), "%s", path);
	l->s = s;
	if (!s)
		ret = stream_open_file_read(path, &l->s);
	if (ret < 0)
		return err_printf(err, errlen, ret == -ENOENT ? -EINVAL : ret,
				  "%s: %s", path, strerror(-ret));
	ret = image_reader_create(l->s, IMAGE_READ_MEM_ZEROED, &l->img);
	if (!ret) {
		ret = image_set_threads(l->img, threads);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "%s: codec threads: %s", path,
					  strerror(-ret));
		ret = image_read_header(l->img, &l->h);
		if (ret < 0)
			err_printf(err, errlen, ret, "%s: %s", path,
				   image_error(l->img));
	}
	return ret;
}

/*
 * Opens every link of the chain that ends at @path, newest first in
 * @links; checks each base is there with the content hash its successor
 * names before anything is built.
 */
static int chain_open(const char *path, struct stream *s, struct link *links,
		      unsigned int *nr, unsigned int threads, char *err,
		      size_t errlen)
{
	char base[4096];
	int ret;

	*nr = 0;
	/* Only the newest link may go through workers: the pages of older
	 * ones are put one by one around what newer links gave. */
	ret = link_open(&links[0], path, s, threads, err, errlen);
	*nr = 1;
	/* A stream is read once, in order: a whole machine, no base. */
	if (!ret && s && links[0].h->has_base)
		return err_printf(err, errlen, -EINVAL,
				  "%s: an incremental image, which a stream "
				  "cannot carry",
				  path);
	while (!ret && links[*nr - 1].h->has_base) {
		const struct link *l = &links[*nr - 1];

		if (*nr == VMSNAP_MAX_CHAIN)
			return err_printf(err, errlen, -EINVAL,
					  "%s: a chain of more than %d images",
					  path, VMSNAP_MAX_CHAIN);
		ret = vmsnap_find_base(l->path, l->h, base, sizeof(base), err,
				       errlen);
		if (ret < 0)
			break;
		ret = link_open(&links[*nr], base, NULL, 0, err, errlen);
		(*nr)++;
	}
	return ret;
}

/* Reads every section of base link @l into @m's RAM, around @done. */
static int read_base(struct rctx *c, struct link *l, struct machine *m,
		     uint64_t *done, char *err, size_t errlen)
{
	struct bctx b = { .c = c };
	const struct image_sink sink = { .opaque = &b,
					 .layout = base_on_layout,
					 .pages = base_on_pages,
					 .batch = base_on_batch };
	int ret;

	/* Lazy: only an index of where each page is. */
	ret = image_add_segment(l->img, 0, c->mc->mem_bytes / PAGE_SIZE,
				c->lazy ? NULL :
					  mem_seg_hva_load(machine_ram(m)));
	if (!ret && !c->lazy)
		ret = image_segment_done(l->img, 0, done);
	if (ret < 0)
		return err_printf(err, errlen, ret, "%s: %s", l->path,
				  strerror(-ret));
	err[0] = 0;
	c->cur = l->s;
	ret = c->lazy ? image_index(l->img, &sink) : image_read(l->img, &sink);
	c->bytes_before += stream_bytes_read(l->s);
	if (ret < 0 && !err[0])
		err_printf(err, errlen, ret, "%s: %s", l->path,
			   image_error(l->img));
	else if (ret < 0) {
		char why[512];

		snprintf(why, sizeof(why), "%s", err);
		err_printf(err, errlen, ret, "%s: %s", l->path, why);
	} else if (!b.layout_ok)
		ret = err_printf(err, errlen, -EINVAL, "%s: no memory layout",
				 l->path);
	return ret;
}

/* vmsnap_restore_file(), or with @s vmsnap_restore_stream(). */
static int restore(const char *path, struct stream *s,
		   const struct vmsnap_restore_opts *o, struct machine **out,
		   struct vmsnap_stats *st, char *err, size_t errlen)
{
	struct rctx c = { .o = o, .err = err, .errlen = errlen };
	const struct image_sink sink = { .opaque = &c,
					 .state = on_state,
					 .layout = on_layout,
					 .pages = on_pages,
					 .batch = on_batch };
	struct link *links = calloc(VMSNAP_MAX_CHAIN, sizeof(*links));
	uint64_t t0 = vmsnap_now_ns(), *done = NULL, hash = 0;
	struct machine *m = NULL;
	struct image *img;
	unsigned int i, nr = 0;
	int ret;

	memset(st, 0, sizeof(*st));
	err[0] = 0;
	if (!links) {
		stream_close(s);
		return -ENOMEM;
	}
	ret = chain_open(path, s, links, &nr,
			 o->lazy ? 0 : vmsnap_threads(o->threads), err, errlen);
	img = links[0].img;
	if (!ret)
		c.live = links[0].h->flags & VMSNAP_FLAG_LIVE;
	/* Random access: a pipe cannot serve a page on demand (the stream
	 * knows a size only for regular files). */
	if (!ret && o->lazy && stream_remaining(links[0].s) == UINT64_MAX)
		ret = err_printf(err, errlen, -EINVAL,
				 "lazy restore reads the image at random and "
				 "needs a regular file, not a pipe or device");
	for (i = 0; !ret && i < nr; i++)
		c.bytes_total += link_size(&links[i]);
	c.cur = links[0].s;
	while (!ret) {
		err[0] = 0;
		ret = image_read_next(img, &sink);
		if (ret < 0) {
			if (!err[0])
				err_printf(err, errlen, ret, "%s",
					   image_error(img));
			break;
		}
		if (ret == 0 && c.layout && !m) {
			ret = build(&c, &m, err, errlen);
			if (!ret)
				ret = check_machine_features(links[0].h, m, err,
							     errlen);
			if (!ret && !o->lazy && o->built)
				o->built(o->consumed_opaque);
			if (!ret)
				ret = image_add_segment(
					img, 0, c.mc->mem_bytes / PAGE_SIZE,
					o->lazy ? NULL :
						  mem_seg_hva_load(
							  machine_ram(m)));
			if (!ret && o->lazy) {
				ret = vmsnap_lazy_create(
					c.mc->mem_bytes / PAGE_SIZE, &c.lazy);
				/* The rest of the image: an index. */
				if (!ret)
					ret = image_index(img, &sink);
				if (ret < 0 && !err[0])
					err_printf(err, errlen, ret, "%s",
						   image_error(img));
				if (!ret)
					ret = 1;
				break;
			}
			if (!ret && nr > 1) {
				done = bitmap_alloc(c.mc->mem_bytes /
						    PAGE_SIZE);
				ret = done ? image_segment_done(img, 0, done) :
					     -ENOMEM;
			}
		}
	}
	if (ret == 1 && !m)
		ret = err_printf(err, errlen, -EINVAL,
				 "the image has no memory layout");
	else if (ret == 1)
		ret = 0;
	if (!ret)
		c.bytes_before = stream_bytes_read(links[0].s);
	/* The bases, newer to older: each fills only what is still missing. */
	for (i = 1; i < nr && !ret; i++) {
		c.link = i;
		ret = read_base(&c, &links[i], m, done, err, errlen);
	}
	if (!ret && c.live)
		ret = check_disks(&c, false, err, errlen);
	for (i = 0; !ret && i < nr; i++) {
		uint64_t p, z;

		image_counts(links[i].img, &p, &z);
		st->zero_pages += z;
		st->bytes += stream_bytes_read(links[i].s);
	}
	if (!ret)
		hash = image_content_hash(img);
	if (!ret && c.lazy) {
		struct image *imgs[VMSNAP_MAX_CHAIN];
		struct stream *streams[VMSNAP_MAX_CHAIN];

		for (i = 0; i < nr; i++) {
			imgs[i] = links[i].img;
			streams[i] = links[i].s;
		}
		ret = vmsnap_lazy_start(c.lazy, m, imgs, streams, nr,
					!o->lazy_demand, o->lazy_done,
					o->opaque, err, errlen);
		if (!ret) {
			/* The machine has them now. */
			for (i = 0; i < nr; i++)
				links[i].img = NULL, links[i].s = NULL;
			c.lazy = NULL;
		}
	}
	if (!ret)
		ret = load_state(&c, m, err, errlen);
	if (!ret && o->track_dirty) {
		ret = machine_dirty_begin(m);
		if (ret < 0)
			err_printf(err, errlen, ret, "dirty tracking: %s",
				   strerror(-ret));
	}
	if (!ret) {
		st->pages = c.pages;
		st->hash = hash;
		st->mem_bytes = c.mc->mem_bytes;
		st->links = nr;
		if (o->progress)
			o->progress(o->opaque, c.bytes_total, c.bytes_total);
	}
	for (i = 0; i < nr; i++)
		link_close(&links[i]);
	free(links);
	bitmap_free(done);
	vmsnap_lazy_free(c.lazy);
	rctx_free(&c);
	if (ret < 0) {
		machine_destroy(m);
		return ret;
	}
	st->ns = vmsnap_now_ns() - t0;
	*out = m;
	return 0;
}

int vmsnap_restore_file(const char *path, const struct vmsnap_restore_opts *o,
			struct machine **out, struct vmsnap_stats *st,
			char *err, size_t errlen)
{
	return restore(path, NULL, o, out, st, err, errlen);
}

int vmsnap_restore_stream(struct stream *s, const char *name,
			  const struct vmsnap_restore_opts *o,
			  struct machine **out, struct vmsnap_stats *st,
			  char *err, size_t errlen)
{
	if (o->lazy) {
		stream_close(s);
		return err_printf(err, errlen, -EINVAL,
				  "a stream cannot be restored lazily");
	}
	return restore(name, s, o, out, st, err, errlen);
}
