/* SPDX-License-Identifier: MIT */
/*
 * What a save writes: the machine, layout, device, VM and vCPU sections,
 * the header's CPU features, and memory (all of it, its holes as zero, or
 * the dirty pages), from the image's header to its END. When and how
 * often they are written (a frozen save, a live save's rounds, the file
 * and its chain) is in vmsnap.c.
 */
#include "snapshot/vmsnap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernel/dev/dev.h"
#include "kernel/mem.h"
#include "kernel/util/log.h"
#include "kernel/vm.h"
#include "machine.pb-c.h"
#include "snapshot/stream.h"
#include "snapshot/vmsnap_priv.h"

/* Pages per slice between progress reports (16 MiB): a migration's
 * bandwidth cap and cancel act between slices. */
#define SLICE_PAGES 4096u

int vmsnap_disk_info(const char *spec, Vmrun__DiskInfo *d)
{
	struct stat st;

	if (stat(spec, &st) < 0)
		return -errno;
	d->size = (uint64_t)st.st_size;
	d->mtime_ns = (uint64_t)st.st_mtim.tv_sec * 1000000000ULL +
		      (uint64_t)st.st_mtim.tv_nsec;
	d->dev = (uint64_t)st.st_dev;
	d->ino = (uint64_t)st.st_ino;
	return 0;
}

/* Packs @msg into a new buffer; returns its length or -ENOMEM. */
static ssize_t pack(const ProtobufCMessage *msg, uint8_t **out)
{
	size_t n = protobuf_c_message_get_packed_size(msg);

	*out = malloc(n ? n : 1);
	if (!*out)
		return -ENOMEM;
	return (ssize_t)protobuf_c_message_pack(msg, *out);
}

/* Writes @msg as a state (or, @layout, a layout) section of @type. */
static int put_msg(struct image *img, bool layout, uint32_t type,
		   const ProtobufCMessage *msg)
{
	uint8_t *buf;
	ssize_t n = pack(msg, &buf);
	int ret;

	if (n < 0)
		return (int)n;
	ret = layout ? image_write_layout(img, type, buf, (size_t)n) :
		       image_write_state(img, type, buf, (size_t)n);
	free(buf);
	return ret;
}

/*
 * The machine section, or with @disks_only the DISKS section of a live
 * save (a MachineConfig with only the disks, as they are at the end).
 */
int put_config(struct image *img, struct machine *m, bool disks_only, char *err,
	       size_t errlen)
{
	const struct machine_config *c = machine_config(m);
	Vmrun__DiskInfo disks[MACHINE_MAX_DISKS], *dp[MACHINE_MAX_DISKS];
	Vmrun__MachineConfig mc;
	unsigned int i;
	int ret;

	vmrun__machine_config__init(&mc);
	if (disks_only)
		goto disks;
	mc.mem_bytes = c->mem;
	mc.nr_vcpus = c->cpus;
	mc.rng = c->rng;
	mc.cmdline = (char *)(uintptr_t)(c->cmdline ? c->cmdline : "");
	mc.dirty_ring = c->dirty == DIRTY_MODE_RING;
	mc.vmm_version = (char *)(uintptr_t)VMSNAP_VMM_VERSION;
	mc.n_nets = c->nr_nets;
	mc.nets = (char **)(uintptr_t)c->nets;
disks:
	for (i = 0; i < c->nr_disks; i++) {
		vmrun__disk_info__init(&disks[i]);
		disks[i].path = (char *)(uintptr_t)c->disks[i];
		ret = vmsnap_disk_info(c->disks[i], &disks[i]);
		if (ret < 0)
			return err_printf(err, errlen, ret, "disk %s: %s",
					  c->disks[i], strerror(-ret));
		dp[i] = &disks[i];
	}
	mc.n_disks = c->nr_disks;
	mc.disks = dp;
	ret = put_msg(img, false,
		      disks_only ? VMSNAP_STATE_DISKS : VMSNAP_STATE_MACHINE,
		      &mc.base);
	return ret < 0 ? err_printf(err, errlen, ret, "writing the machine: %s",
				    image_error(img)) :
			 0;
}

static int layout_map(struct mem_map *map, void *arg)
{
	struct layout_acc *a = arg;
	Vmrun__MemMap *mm;

	if (mem_map_seg(map) != a->ram || a->n == ARRAY_SIZE(a->maps)) {
		a->ret = -EOPNOTSUPP;
		return 1;
	}
	mm = &a->maps[a->n];
	vmrun__mem_map__init(mm);
	mm->segment = 0;
	mm->gpa = mem_map_gpa(map);
	mm->size = mem_map_len(map);
	mm->seg_offset = mem_map_seg_off(map);
	a->mp[a->n++] = mm;
	return 0;
}

int vmsnap_layout(struct machine *m, struct layout_acc *a, Vmrun__MemLayout *l,
		  Vmrun__MemSegment *seg, Vmrun__MemSegment **segp)
{
	memset(a, 0, sizeof(*a));
	a->ram = machine_ram(m);
	mem_for_each_map (vm_mem(machine_vm(m)), layout_map, a)
		;
	if (a->ret < 0)
		return a->ret;
	vmrun__mem_segment__init(seg);
	seg->id = 0;
	seg->name = (char *)(uintptr_t)mem_seg_name(a->ram);
	seg->size = mem_seg_size(a->ram);
	*segp = seg;
	vmrun__mem_layout__init(l);
	l->n_segments = 1;
	l->segments = segp;
	l->n_maps = a->n;
	l->maps = a->mp;
	return 0;
}

static int put_layout(struct image *img, struct machine *m, char *err,
		      size_t errlen)
{
	Vmrun__MemSegment seg, *segp;
	struct layout_acc a;
	Vmrun__MemLayout l;
	int ret = vmsnap_layout(m, &a, &l, &seg, &segp);

	if (ret < 0)
		return err_printf(err, errlen, ret,
				  "memory other than the RAM segment: %s",
				  strerror(-ret));
	ret = put_msg(img, true, VMSNAP_LAYOUT_MEM, &l.base);
	return ret < 0 ? err_printf(err, errlen, ret, "writing the layout: %s",
				    image_error(img)) :
			 0;
}

static int put_devices(struct image *img, struct machine *m, char *err,
		       size_t errlen)
{
	unsigned int i, n = machine_nr_devs(m);
	int ret = 0;

	for (i = 0; i < n && !ret; i++) {
		struct dev *d = machine_dev(m, i);
		Vmrun__DeviceState ds;
		uint8_t *buf;
		int len = d->ops->save ? d->ops->save(d, NULL, 0) : 0;

		if (len < 0)
			return err_printf(err, errlen, len, "device %s: %s",
					  d->ops->name, strerror(-len));
		buf = malloc(len ? (size_t)len : 1);
		if (!buf)
			return -ENOMEM;
		if (len)
			len = d->ops->save(d, buf, (size_t)len);
		if (len < 0) {
			free(buf);
			return err_printf(err, errlen, len, "device %s: %s",
					  d->ops->name, strerror(-len));
		}
		vmrun__device_state__init(&ds);
		ds.name = (char *)(uintptr_t)d->ops->name;
		ds.index = i;
		ds.type = (char *)(uintptr_t)d->ops->state_type;
		ds.data.data = buf;
		ds.data.len = (size_t)len;
		ret = put_msg(img, false, VMSNAP_STATE_DEVICE, &ds.base);
		free(buf);
	}
	return ret < 0 ? err_printf(err, errlen, ret, "writing devices: %s",
				    image_error(img)) :
			 0;
}

/* The CPUID feature words of @st that a restoring host must support. */
static const struct {
	uint32_t leaf, subleaf, reg, ignore;
} feature_words[] = {
	{ 1, 0, 2, 1u << 27 },		     /* ECX; OSXSAVE follows CR4 */
	{ 1, 0, 3, 0 },			     /* EDX */
	{ 7, 0, 1, 0 },			     /* EBX */
	{ 7, 0, 2, (1u << 4) | (1u << 22) }, /* ECX; OSPKE follows CR4 */
	{ 7, 0, 3, 0 },			     /* EDX */
	{ 0xd, 1, 0, 0 },		     /* XSAVE features */
	{ 0x80000001, 0, 2, 0 },	     /* ECX */
	{ 0x80000001, 0, 3, 0 },	     /* EDX */
};

uint32_t vmsnap_feature_ignore(uint32_t leaf, uint32_t subleaf, uint32_t reg)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(feature_words); i++)
		if (feature_words[i].leaf == leaf &&
		    feature_words[i].subleaf == subleaf &&
		    feature_words[i].reg == reg)
			return feature_words[i].ignore;
	return 0;
}

static uint32_t cpuid_reg(const Vmrun__X86CpuidEntry *e, uint32_t reg)
{
	switch (reg) {
	case 0:
		return e->eax;
	case 1:
		return e->ebx;
	case 2:
		return e->ecx;
	default:
		return e->edx;
	}
}

/* Fills the header's cpu_features and vcpu_model from vCPU 0's CPUID. */
static int cpu_features(const Vmrun__VcpuState *st, uint8_t **buf, size_t *len,
			char *model, size_t mlen)
{
	Vmrun__CpuidWord w[ARRAY_SIZE(feature_words)], *wp[ARRAY_SIZE(w)];
	Vmrun__CpuFeatures f;
	char vendor[13] = "";
	uint32_t sig = 0;
	size_t i, j, n = 0;
	ssize_t r;

	for (j = 0; j < st->n_cpuid; j++) {
		const Vmrun__X86CpuidEntry *e = st->cpuid[j];

		if (e->function == 0) {
			memcpy(vendor, &e->ebx, 4);
			memcpy(vendor + 4, &e->edx, 4);
			memcpy(vendor + 8, &e->ecx, 4);
		} else if (e->function == 1) {
			sig = e->eax;
		}
		for (i = 0; i < ARRAY_SIZE(feature_words); i++) {
			if (feature_words[i].leaf != e->function ||
			    feature_words[i].subleaf != e->index)
				continue;
			vmrun__cpuid_word__init(&w[n]);
			w[n].leaf = e->function;
			w[n].subleaf = e->index;
			w[n].reg = feature_words[i].reg;
			w[n].bits = cpuid_reg(e, feature_words[i].reg) &
				    ~feature_words[i].ignore;
			wp[n] = &w[n];
			n++;
		}
	}
	snprintf(model, mlen, "%s family %#x model %#x stepping %u", vendor,
		 ((sig >> 8) & 0xf) + ((sig >> 20) & 0xff),
		 ((sig >> 4) & 0xf) | ((sig >> 12) & 0xf0), sig & 0xf);
	vmrun__cpu_features__init(&f);
	f.n_words = n;
	f.words = wp;
	r = pack(&f.base, buf);
	if (r < 0)
		return (int)r;
	*len = (size_t)r;
	return 0;
}

/* The first page in [@pg, @end) that may hold data (memfd SEEK_DATA). */
static uint64_t seg_next_data(struct mem_seg *seg, uint64_t pg, uint64_t end)
{
	off_t off = lseek(mem_seg_fd(seg), (off_t)(pg * PAGE_SIZE), SEEK_DATA);

	if (off < 0)
		return errno == ENXIO ? end : pg; /* ENXIO: holes to the end */
	return MIN((uint64_t)off / PAGE_SIZE, end);
}

/* The first page at or after @pg (< @end) in a hole, or @end. */
static uint64_t seg_next_hole(struct mem_seg *seg, uint64_t pg, uint64_t end)
{
	off_t off = lseek(mem_seg_fd(seg), (off_t)(pg * PAGE_SIZE), SEEK_HOLE);

	if (off < 0)
		return end;
	return MAX(MIN(((uint64_t)off + PAGE_SIZE - 1) / PAGE_SIZE, end),
		   pg + 1);
}

/* Writes every page of @ram: holes of the memfd (never written) as zero, unread. */
static int put_all_pages(struct image *img, struct mem_seg *ram,
			 const struct vmsnap_save_opts *o)
{
	uint64_t pg, nr_pages = mem_seg_pages(ram);
	int ret = 0;

	for (pg = 0; pg < nr_pages && !ret;) {
		uint64_t end = MIN(pg + SLICE_PAGES, nr_pages), data;

		data = seg_next_data(ram, pg, end);
		ret = image_write_zero_range(img, 0, pg, data);
		if (!ret && data < end) {
			end = seg_next_hole(ram, data, end);
			ret = image_write_page_range(img, 0, mem_seg_hva(ram),
						     data, end, NULL);
		}
		if (!ret && o->progress)
			o->progress(o->opaque, end, nr_pages);
		pg = data < end ? end : data;
	}
	return ret;
}

/* Writes the pages of @ram set in @dirty. */
static int put_dirty_pages(struct image *img, struct mem_seg *ram,
			   const uint64_t *dirty,
			   const struct vmsnap_save_opts *o)
{
	uint64_t pg, nr_pages = mem_seg_pages(ram);
	int ret = 0;

	for (pg = 0; pg < nr_pages && !ret; pg += SLICE_PAGES) {
		uint64_t end = MIN(pg + SLICE_PAGES, nr_pages);

		ret = image_write_page_range(img, 0, mem_seg_hva(ram), pg, end,
					     dirty);
		if (!ret && o->progress)
			o->progress(o->opaque, end, nr_pages);
	}
	return ret;
}

/* The header (from vCPU 0's CPU features), the machine and the layout. */
int begin_image(struct machine *m, struct stream *s,
		const struct vmsnap_save_opts *o, bool incremental, bool live,
		const struct capture *cs, struct image **out, char *err,
		size_t errlen)
{
	struct image_header hdr = { .codec = o->codec,
				    .aligned = o->aligned,
				    .rewrites = live,
				    .adaptive = o->adaptive,
				    .flags = live ? VMSNAP_FLAG_LIVE : 0 };
	uint8_t *features = NULL;
	char model[96];
	int ret;

	ret = cpu_features(cs->cpus[0], &features, &hdr.cpu_features_len, model,
			   sizeof(model));
	if (ret < 0)
		return ret;
	hdr.cpu_features = features;
	hdr.vcpu_model = model;
	if (incremental) {
		if (!o->chain || !o->chain->valid) {
			free(features);
			return err_printf(err, errlen, -EINVAL,
					  "an incremental image needs a base");
		}
		hdr.has_base = true;
		hdr.base_hash = o->chain->hash;
		hdr.base_path = o->chain->path;
	}
	ret = image_writer_create(s, &hdr, out);
	free(features);
	if (ret < 0)
		return err_printf(err, errlen, ret, "writing the header: %s",
				  strerror(-ret));
	ret = image_set_threads(*out, vmsnap_threads(o->threads));
	if (ret < 0)
		return err_printf(err, errlen, ret, "codec threads: %s",
				  strerror(-ret));
	ret = put_config(*out, m, false, err, errlen);
	if (!ret)
		ret = put_layout(*out, m, err, errlen);
	return ret;
}

/* The VM, vCPU and device state sections. */
int put_state(struct image *img, struct machine *m, const struct capture *cs,
	      char *err, size_t errlen)
{
	unsigned int i;
	int ret;

	ret = put_msg(img, false, VMSNAP_STATE_VM, &cs->vms->base);
	if (ret < 0)
		return err_printf(err, errlen, ret, "writing the VM state: %s",
				  image_error(img));
	for (i = 0; i < cs->nr; i++) {
		Vmrun__VcpuSection vs;
		uint8_t *buf;
		ssize_t n = pack(&cs->cpus[i]->base, &buf);

		if (n < 0)
			return (int)n;
		vmrun__vcpu_section__init(&vs);
		vs.id = i;
		vs.state.data = buf;
		vs.state.len = (size_t)n;
		ret = put_msg(img, false, VMSNAP_STATE_VCPU, &vs.base);
		free(buf);
		if (ret < 0)
			return err_printf(err, errlen, ret,
					  "writing vCPU %u: %s", i,
					  image_error(img));
	}
	return put_devices(img, m, err, errlen);
}

int put_pages(struct image *img, struct machine *m, const uint64_t *dirty,
	      const struct vmsnap_save_opts *o, char *err, size_t errlen)
{
	struct mem_seg *ram = machine_ram(m);
	int ret = dirty ? put_dirty_pages(img, ram, dirty, o) :
			  put_all_pages(img, ram, o);

	return ret < 0 ? err_printf(err, errlen, ret, "writing memory: %s",
				    image_error(img)) :
			 0;
}

int end_image(struct image *img, struct machine *m, struct stream *s,
	      struct vmsnap_stats *st, char *err, size_t errlen)
{
	int ret = image_finish(img, &st->hash);

	if (ret < 0)
		return err_printf(err, errlen, ret, "finishing: %s",
				  image_error(img));
	image_counts(img, &st->pages, &st->zero_pages);
	image_batch_counts(img, &st->batches, &st->raw_batches);
	st->bytes = stream_bytes_written(s);
	st->mem_bytes = mem_seg_size(machine_ram(m));
	return 0;
}
