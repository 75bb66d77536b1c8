/* SPDX-License-Identifier: MIT */
/*
 * Power and reset: a 16-bit write of 0x2000 to port 0x604 powers off (as
 * QEMU's q35 ACPI PM1a control does), and so does entering S5 through the
 * hardware-reduced ACPI sleep control register at port 0x600 (what the
 * ACPI tables declare, for Linux); 0xfe to port 0x64 (the i8042
 * command port) or 0x06/0x0e to port 0xcf9 resets. The i8042 data and
 * status ports read as "nothing pending". The VM stops with the matching
 * reason; vmrun turns it into the exit code.
 */
#include "kernel/dev/legacy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/dev/dev_state.h"
#include "kernel/iotrap.h"
#include "kernel/util/log.h"
#include "kernel/vcpu.h"
#include "kernel/vm.h"
#include "kernel/x86/vmrun_boot.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define I8042_RESET 0xfe
#define RST_CTRL 0xcf9

struct power {
	struct dev dev;
};

static int power_pm(struct vcpu *vcpu, uint64_t addr __unused, void *data,
		    uint32_t len, bool is_write, void *opaque __unused)
{
	uint16_t v = 0;

	if (!is_write) {
		memset(data, 0, len);
		return VCPU_CONTINUE;
	}
	memcpy(&v, data, len < 2 ? len : 2);
	if (len >= 2 && (v & 0x3c00) == VMRUN_POWEROFF_VALUE) {
		return vm_guest_stop(vcpu, VM_EXIT_POWEROFF,
				     "guest powered off");
	}
	return VCPU_CONTINUE;
}

/* The sleep control register: SLP_EN (bit 5) with SLP_TYP (bits 2-4) =
 * 5, the value the DSDT's _S5 object gives. Other sleep states: ignored. */
static int power_sleep(struct vcpu *vcpu, uint64_t addr __unused, void *data,
		       uint32_t len, bool is_write, void *opaque __unused)
{
	uint8_t v;

	if (!is_write) {
		memset(data, 0, len);
		return VCPU_CONTINUE;
	}
	v = *(uint8_t *)data;
	if ((v & 0x20) && ((v >> 2) & 7) == 5)
		return vm_guest_stop(vcpu, VM_EXIT_POWEROFF,
				     "guest powered off (ACPI S5)");
	return VCPU_CONTINUE;
}

static int power_i8042(struct vcpu *vcpu, uint64_t addr, void *data,
		       uint32_t len, bool is_write, void *opaque __unused)
{
	if (!is_write) {
		/* Status: output buffer empty, input buffer empty. */
		memset(data, 0, len);
		return VCPU_CONTINUE;
	}
	if (addr == I8042_CMD && *(uint8_t *)data == I8042_RESET) {
		return vm_guest_stop(vcpu, VM_EXIT_RESET,
				     "guest reset through the i8042");
	}
	return VCPU_CONTINUE;
}

static int power_cf9(struct vcpu *vcpu, uint64_t addr __unused, void *data,
		     uint32_t len, bool is_write, void *opaque __unused)
{
	if (!is_write) {
		memset(data, 0, len);
		return VCPU_CONTINUE;
	}
	if (len == 1 && (*(uint8_t *)data & 0x04)) {
		return vm_guest_stop(vcpu, VM_EXIT_RESET,
				     "guest reset through port 0xcf9");
	}
	return VCPU_CONTINUE;
}

static int power_init(struct vm *vm, const char *conf __unused,
		      struct dev **out)
{
	struct power *p = calloc(1, sizeof(*p));
	struct iotrap *io = vm_pio(vm);
	int ret;

	if (!p)
		return -ENOMEM;
	p->dev.vm = vm;
	p->dev.ops = &power_ops;
	ret = iotrap_register(io, VMRUN_PORT_POWEROFF, 2, power_pm, p);
	if (ret < 0)
		goto err_free;
	ret = iotrap_register(io, I8042_DATA, 1, power_i8042, p);
	if (ret < 0)
		goto err_pm;
	ret = iotrap_register(io, I8042_CMD, 1, power_i8042, p);
	if (ret < 0)
		goto err_data;
	ret = iotrap_register(io, RST_CTRL, 1, power_cf9, p);
	if (ret < 0)
		goto err_cmd;
	ret = iotrap_register(io, VMRUN_PORT_SLEEP, 1, power_sleep, p);
	if (ret < 0)
		goto err_cf9;
	*out = &p->dev;
	return 0;

err_cf9:
	(void)!iotrap_unregister(io, RST_CTRL);
err_cmd:
	(void)!iotrap_unregister(io, I8042_CMD);
err_data:
	(void)!iotrap_unregister(io, I8042_DATA);
err_pm:
	(void)!iotrap_unregister(io, VMRUN_PORT_POWEROFF);
err_free:
	pr_err("power: registering ports: %s", strerror(-ret));
	free(p);
	return ret;
}

static void power_fini(struct dev *dev)
{
	struct iotrap *io = vm_pio(dev->vm);

	(void)!iotrap_unregister(io, VMRUN_PORT_SLEEP);
	(void)!iotrap_unregister(io, RST_CTRL);
	(void)!iotrap_unregister(io, I8042_CMD);
	(void)!iotrap_unregister(io, I8042_DATA);
	(void)!iotrap_unregister(io, VMRUN_PORT_POWEROFF);
	free(container_of(dev, struct power, dev));
}

static int power_save(struct dev *dev __unused, void *buf, size_t len)
{
	Vmrun__PowerState m = VMRUN__POWER_STATE__INIT;

	return dev_state_pack(&m.base, buf, len); /* stateless */
}

static int power_load(struct dev *dev __unused, const void *buf, size_t len)
{
	Vmrun__PowerState *m = vmrun__power_state__unpack(NULL, len, buf);

	if (!m)
		return -EINVAL;
	vmrun__power_state__free_unpacked(m, NULL);
	return 0;
}

const struct dev_ops power_ops = {
	.name = "power",
	.state_type = "vmrun.PowerState",
	.init = power_init,
	.fini = power_fini,
	.save = power_save,
	.load = power_load,
};
