/* SPDX-License-Identifier: MIT */
/* Reading an image without running it (vmrun image info/verify). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/util/log.h"
#include "machine.pb-c.h"
#include "snapshot/stream.h"
#include "snapshot/vmsnap.h"
#include "snapshot/vmsnap_priv.h"
#include "vcpu_x86.pb-c.h"
#include "vm_state.pb-c.h"

struct ictx {
	struct vmsnap_info *inf;
	Vmrun__MemLayout *layout;
	bool have_machine, have_vm, have_disks;
	uint64_t vcpus_seen;
	char *err;
	size_t errlen;
};

static int info_state(void *opaque, uint32_t type, const void *data, size_t len)
{
	struct ictx *c = opaque;
	struct vmsnap_info *inf = c->inf;
	Vmrun__MachineConfig *mc;
	Vmrun__VcpuSection *vs;
	Vmrun__VcpuState *vst;
	Vmrun__DeviceState *ds;
	Vmrun__VmState *vm;
	int ret = 0;

	switch (type) {
	case VMSNAP_STATE_MACHINE:
		mc = vmrun__machine_config__unpack(NULL, len, data);
		if (!mc || c->have_machine || !mc->nr_vcpus ||
		    mc->nr_vcpus > 64) {
			if (mc)
				vmrun__machine_config__free_unpacked(mc, NULL);
			return err_printf(c->err, c->errlen, -EINVAL,
					  "a bad or second machine section");
		}
		c->have_machine = true;
		inf->nr_vcpus = mc->nr_vcpus;
		inf->mem_bytes = mc->mem_bytes;
		inf->nr_disks = (unsigned int)mc->n_disks;
		inf->nr_nets = (unsigned int)mc->n_nets;
		snprintf(inf->vmm_version, sizeof(inf->vmm_version), "%s",
			 mc->vmm_version);
		vmrun__machine_config__free_unpacked(mc, NULL);
		return 0;
	case VMSNAP_STATE_VM:
		vm = vmrun__vm_state__unpack(NULL, len, data);
		if (!vm || c->have_vm) {
			if (vm)
				vmrun__vm_state__free_unpacked(vm, NULL);
			return err_printf(c->err, c->errlen, -EINVAL,
					  "a bad or second VM state section");
		}
		c->have_vm = true;
		vmrun__vm_state__free_unpacked(vm, NULL);
		return 0;
	case VMSNAP_STATE_VCPU:
		vs = vmrun__vcpu_section__unpack(NULL, len, data);
		if (!vs || !c->have_machine || vs->id >= c->inf->nr_vcpus ||
		    (c->vcpus_seen >> vs->id) & 1)
			ret = -EINVAL;
		vst = ret ? NULL :
			    vmrun__vcpu_state__unpack(NULL, vs->state.len,
						      vs->state.data);
		if (!ret && !vst)
			ret = -EINVAL;
		if (!ret)
			c->vcpus_seen |= 1ULL << vs->id;
		if (vst)
			vmrun__vcpu_state__free_unpacked(vst, NULL);
		if (vs)
			vmrun__vcpu_section__free_unpacked(vs, NULL);
		return ret ? err_printf(c->err, c->errlen, -EINVAL,
					"a bad vCPU section") :
			     0;
	case VMSNAP_STATE_DEVICE:
		ds = vmrun__device_state__unpack(NULL, len, data);
		if (!ds || inf->nr_devs == ARRAY_SIZE(inf->devs) ||
		    ds->index != inf->nr_devs) {
			if (ds)
				vmrun__device_state__free_unpacked(ds, NULL);
			return err_printf(c->err, c->errlen, -EINVAL,
					  "a bad device section");
		}
		snprintf(inf->devs[inf->nr_devs++], sizeof(inf->devs[0]), "%s",
			 ds->name);
		vmrun__device_state__free_unpacked(ds, NULL);
		return 0;
	case VMSNAP_STATE_DISKS:
		mc = vmrun__machine_config__unpack(NULL, len, data);
		ret = !mc || !c->have_machine || c->have_disks ||
		      mc->n_disks != inf->nr_disks;
		if (mc)
			vmrun__machine_config__free_unpacked(mc, NULL);
		c->have_disks = true;
		return ret ? err_printf(c->err, c->errlen, -EINVAL,
					"a bad or second disks section") :
			     0;
	default:
		return err_printf(c->err, c->errlen, -EINVAL,
				  "unknown state section type %u", type);
	}
}

static int info_layout(void *opaque, uint32_t type, const void *data,
		       size_t len)
{
	struct ictx *c = opaque;

	if (type != VMSNAP_LAYOUT_MEM || c->layout)
		return err_printf(c->err, c->errlen, -EINVAL,
				  "an unknown or second layout section");
	c->layout = vmrun__mem_layout__unpack(NULL, len, data);
	if (!c->layout)
		return err_printf(c->err, c->errlen, -EINVAL,
				  "the memory layout does not decode");
	return 0;
}

static int info_one(const char *path, struct vmsnap_info *inf, char *err,
		    size_t errlen)
{
	struct ictx c = { .inf = inf, .err = err, .errlen = errlen };
	const struct image_sink sink = { .opaque = &c,
					 .state = info_state,
					 .layout = info_layout };
	const struct image_header *h;
	bool segs = false;
	struct image *img = NULL;
	struct stream *s;
	size_t i;
	int ret;

	memset(inf, 0, sizeof(*inf));
	err[0] = 0;
	ret = stream_open_file_read(path, &s);
	if (ret < 0)
		return err_printf(err, errlen, ret == -ENOENT ? -EINVAL : ret,
				  "%s: %s", path, strerror(-ret));
	ret = image_reader_create(s, 0, &img);
	if (!ret) {
		ret = image_read_header(img, &h);
		if (ret < 0)
			err_printf(err, errlen, ret, "%s", image_error(img));
	}
	if (!ret) {
		inf->codec = h->codec;
		inf->aligned = h->aligned;
		inf->live = h->flags & VMSNAP_FLAG_LIVE;
		inf->has_base = h->has_base;
		inf->base_hash = h->base_hash;
		snprintf(inf->base_path, sizeof(inf->base_path), "%s",
			 h->base_path ? h->base_path : "");
		snprintf(inf->vcpu_model, sizeof(inf->vcpu_model), "%s",
			 h->vcpu_model ? h->vcpu_model : "");
	}
	while (!ret) {
		err[0] = 0;
		ret = image_read_next(img, &sink);
		if (ret < 0 && !err[0])
			err_printf(err, errlen, ret, "%s", image_error(img));
		if (ret == 0 && c.layout && !segs) {
			segs = true;
			for (i = 0; i < c.layout->n_segments && !ret; i++)
				ret = image_add_segment(
					img, c.layout->segments[i]->id,
					c.layout->segments[i]->size / 4096,
					NULL);
			if (ret < 0)
				err_printf(err, errlen, ret,
					   "the layout's segments: %s",
					   strerror(-ret));
		}
	}
	if (ret == 1) {
		ret = 0;
		if (!c.have_machine || !c.have_vm || !c.layout)
			ret = err_printf(
				err, errlen, -EINVAL,
				"the image lacks its machine, VM state or layout section");
		else if (c.vcpus_seen != (inf->nr_vcpus == 64 ?
						  ~0ULL :
						  (1ULL << inf->nr_vcpus) - 1))
			ret = err_printf(err, errlen, -EINVAL,
					 "the image lacks a vCPU's state");
	}
	if (!ret) {
		image_counts(img, &inf->pages, &inf->zero_pages);
		inf->content_hash = image_content_hash(img);
		inf->bytes = stream_bytes_read(s);
	}
	if (c.layout)
		vmrun__mem_layout__free_unpacked(c.layout, NULL);
	image_destroy(img);
	stream_close(s);
	return ret;
}

int vmsnap_info(const char *path, struct vmsnap_info *inf, char *err,
		size_t errlen)
{
	struct vmsnap_info *b = malloc(sizeof(*b));
	struct image_header h = { .has_base = true };
	char cur[4096], base[4096], why[512];
	int ret;

	if (!b)
		return -ENOMEM;
	ret = info_one(path, inf, err, errlen);
	inf->links = 1;
	inf->chain_pages = inf->pages;
	*b = *inf;
	snprintf(cur, sizeof(cur), "%s", path);
	while (!ret && b->has_base) {
		if (inf->links == VMSNAP_MAX_CHAIN) {
			ret = err_printf(err, errlen, -EINVAL,
					 "%s: a chain of more than %d images",
					 path, VMSNAP_MAX_CHAIN);
			break;
		}
		h.base_hash = b->base_hash;
		h.base_path = b->base_path[0] ? b->base_path : NULL;
		ret = vmsnap_find_base(cur, &h, base, sizeof(base), err,
				       errlen);
		if (ret < 0)
			break;
		if (inf->links == 1)
			snprintf(inf->base_path, sizeof(inf->base_path), "%s",
				 base);
		snprintf(cur, sizeof(cur), "%s", base);
		ret = info_one(cur, b, why, sizeof(why));
		if (ret < 0)
			ret = err_printf(err, errlen, ret, "%s: %s", cur, why);
		else if (b->content_hash != h.base_hash)
			ret = err_printf(err, errlen, -EINVAL,
					 "%s: not the base its successor names",
					 cur);
		else if (b->mem_bytes != inf->mem_bytes)
			ret = err_printf(err, errlen, -EINVAL,
					 "%s: a base of another memory size",
					 cur);
		inf->links++;
		inf->chain_pages += b->pages;
	}
	free(b);
	return ret;
}

/* vmsnap_sections()'s walk: each state and layout section, in order. */
struct sctx {
	vmsnap_section_fn fn;
	void *opaque;
	unsigned int index;
};

static int sections_state(void *opaque, uint32_t type, const void *data,
			  size_t len)
{
	struct sctx *c = opaque;

	return c->fn(c->opaque, c->index++, false, type, data, len);
}

static int sections_layout(void *opaque, uint32_t type, const void *data,
			   size_t len)
{
	struct sctx *c = opaque;

	return c->fn(c->opaque, c->index++, true, type, data, len);
}

int vmsnap_sections(const char *path, vmsnap_section_fn fn, void *opaque,
		    char *err, size_t errlen)
{
	struct sctx c = { .fn = fn, .opaque = opaque };
	const struct image_sink sink = { .opaque = &c,
					 .state = sections_state,
					 .layout = sections_layout };
	struct stream *s;
	struct image *img;
	int ret;

	err[0] = 0;
	ret = stream_open_file_read(path, &s);
	if (ret < 0)
		return err_printf(err, errlen, ret == -ENOENT ? -EINVAL : ret,
				  "%s: %s", path, strerror(-ret));
	/* Pages are checked and dropped: any segment up to 1 TiB. */
	ret = image_reader_create(s, IMAGE_READ_ALLOW_REWRITE, &img);
	if (!ret)
		ret = image_add_segment(img, 0, 1ULL << 28, NULL);
	if (!ret)
		ret = image_read(img, &sink);
	if (ret < 0 && !err[0])
		err_printf(err, errlen, ret, "%s", image_error(img));
	image_destroy(img);
	stream_close(s);
	return ret;
}
