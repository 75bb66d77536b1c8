/* SPDX-License-Identifier: MIT */
#include "kernel/dev/harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/iotrap.h"
#include "kernel/mem.h"
#include "kernel/util/log.h"
#include "kernel/vcpu.h"
#include "kernel/vm.h"
#include "kernel/x86/vmrun_harness.h"

#define PAGE 4096u

struct harness {
	struct vm *vm;
	const struct harness_ops *ops;
	void *opaque;
	uint32_t addr_lo, addr_hi;
	uint32_t status;
	bool have_desc;
	struct harness_desc desc;
	char error[160];
};

static bool overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

int harness_check(struct vm *vm, uint64_t gpa, struct harness_desc *out,
		  char *err, size_t errlen)
{
	struct vm_mem *mem = vm_mem(vm);
	struct vmrun_harness_desc d;

	if (gpa % 8 || mem_read(mem, gpa, &d, sizeof(d)) < 0)
		return err_printf(err, errlen, -EINVAL,
				  "descriptor at %#llx: not 8-byte aligned "
				  "guest RAM",
				  (unsigned long long)gpa);
	if (d.magic != VMRUN_HARNESS_MAGIC)
		return err_printf(err, errlen, -EINVAL,
				  "descriptor at %#llx: magic %#x, not %#x",
				  (unsigned long long)gpa, d.magic,
				  VMRUN_HARNESS_MAGIC);
	if (d.version != VMRUN_HARNESS_VERSION || d.flags)
		return err_printf(err, errlen, -EINVAL,
				  "descriptor version %u flags %#x: this "
				  "vmrun speaks version %u, flags 0",
				  d.version, d.flags, VMRUN_HARNESS_VERSION);
	if (!d.input_max || d.input_max > VMRUN_HARNESS_INPUT_MAX)
		return err_printf(err, errlen, -EINVAL,
				  "input buffer of %u bytes: must be 1..%u",
				  d.input_max, VMRUN_HARNESS_INPUT_MAX);
	if (!mem_range_ok(mem, d.input_gpa, d.input_max))
		return err_printf(err, errlen, -EINVAL,
				  "input buffer %#llx+%u: not inside guest RAM",
				  (unsigned long long)d.input_gpa, d.input_max);
	if (overlap(d.input_gpa, d.input_max, gpa, sizeof(d)))
		return err_printf(err, errlen, -EINVAL,
				  "input buffer overlaps the descriptor");
	if (d.cov_gpa || d.cov_size) {
		if (d.cov_gpa % PAGE || d.cov_size < VMRUN_HARNESS_COV_MIN ||
		    d.cov_size > VMRUN_HARNESS_COV_MAX ||
		    (d.cov_size & (d.cov_size - 1)))
			return err_printf(
				err, errlen, -EINVAL,
				"coverage map %#llx+%u: must be page aligned, "
				"a power of two of %u..%u bytes",
				(unsigned long long)d.cov_gpa, d.cov_size,
				VMRUN_HARNESS_COV_MIN, VMRUN_HARNESS_COV_MAX);
		if (!mem_range_ok(mem, d.cov_gpa, d.cov_size))
			return err_printf(
				err, errlen, -EINVAL,
				"coverage map %#llx+%u: not inside guest RAM",
				(unsigned long long)d.cov_gpa, d.cov_size);
		if (overlap(d.cov_gpa, d.cov_size, d.input_gpa, d.input_max) ||
		    overlap(d.cov_gpa, d.cov_size, gpa, sizeof(d)))
			return err_printf(err, errlen, -EINVAL,
					  "coverage map overlaps the input "
					  "buffer or the descriptor");
	}
	out->desc_gpa = gpa;
	out->input_gpa = d.input_gpa;
	out->input_max = d.input_max;
	out->cov_gpa = d.cov_gpa;
	out->cov_size = d.cov_size;
	return 0;
}

static int harness_io(struct vcpu *vcpu, uint64_t addr, void *data,
		      uint32_t len, bool is_write, void *opaque)
{
	struct harness *h = opaque;
	uint32_t v = 0, cmd;
	struct harness_desc d;

	if (len != 4) {
		if (!is_write)
			memset(data, 0xff, len);
		return VCPU_CONTINUE;
	}
	if (!is_write) {
		v = addr == VMRUN_HARNESS_PORT_STATUS ? h->status : 0;
		memcpy(data, &v, 4);
		return VCPU_CONTINUE;
	}
	memcpy(&v, data, 4);
	if (addr == VMRUN_HARNESS_PORT_LO) {
		h->addr_lo = v;
		return VCPU_CONTINUE;
	}
	if (addr == VMRUN_HARNESS_PORT_HI) {
		h->addr_hi = v;
		return VCPU_CONTINUE;
	}
	if (addr != VMRUN_HARNESS_PORT_CMD)
		return VCPU_CONTINUE;
	cmd = v & 0xff;
	if (cmd == VMRUN_HARNESS_ANNOUNCE) {
		if (!h->ops) {
			h->status = VMRUN_HARNESS_ABSENT;
			return VCPU_CONTINUE;
		}
		if (harness_check(h->vm,
				  ((uint64_t)h->addr_hi << 32) | h->addr_lo, &d,
				  h->error, sizeof(h->error)) < 0) {
			pr_warn("fuzz harness: guest %s", h->error);
			h->status = VMRUN_HARNESS_REFUSED;
			return VCPU_CONTINUE;
		}
		h->desc = d;
		h->have_desc = true;
		h->error[0] = 0;
		h->status = VMRUN_HARNESS_OK;
		return VCPU_CONTINUE;
	}
	if (!h->ops || !h->have_desc)
		return VCPU_CONTINUE;
	switch (cmd) {
	case VMRUN_HARNESS_CHECKPOINT:
		return h->ops->event(h->opaque, vcpu, HARNESS_CHECKPOINT, 0);
	case VMRUN_HARNESS_DONE:
		return h->ops->event(h->opaque, vcpu, HARNESS_DONE, 0);
	case VMRUN_HARNESS_CRASH:
		return h->ops->event(h->opaque, vcpu, HARNESS_CRASH, v >> 8);
	}
	return VCPU_CONTINUE;
}

int harness_create(struct vm *vm, struct harness **out)
{
	struct harness *h = calloc(1, sizeof(*h));
	int ret;

	if (!h)
		return -ENOMEM;
	h->vm = vm;
	ret = iotrap_register(vm_pio(vm), VMRUN_HARNESS_PORT,
			      VMRUN_HARNESS_PORTS, harness_io, h);
	if (ret < 0) {
		free(h);
		return ret;
	}
	*out = h;
	return 0;
}

void harness_destroy(struct harness *h)
{
	if (!h)
		return;
	if (iotrap_unregister(vm_pio(h->vm), VMRUN_HARNESS_PORT) < 0)
		pr_warn("fuzz harness: ports were not registered");
	free(h);
}

void harness_attach(struct harness *h, const struct harness_ops *ops,
		    void *opaque)
{
	h->ops = ops;
	h->opaque = opaque;
	if (!ops)
		h->have_desc = false;
}

const struct harness_desc *harness_desc(const struct harness *h)
{
	return h->have_desc ? &h->desc : NULL;
}

const char *harness_error(const struct harness *h)
{
	return h->error;
}

void harness_set_desc(struct harness *h, const struct harness_desc *d)
{
	h->desc = *d;
	h->have_desc = true;
	h->status = VMRUN_HARNESS_OK;
}
