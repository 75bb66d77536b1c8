/* SPDX-License-Identifier: MIT */
#include "kernel/irq.h"

#include <errno.h>
#include <string.h>

#include "kernel/kvm_ioctl.h"
#include "kernel/vm.h"

int irq_line(struct vm *vm, uint32_t gsi, bool level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = level ? 1 : 0 };

	if (!vm_has_irqchip(vm))
		return -ENODEV;
	int ret = kvm_ioctl(vm_fd(vm), KVM_IRQ_LINE, &l);

	return ret < 0 ? ret : 0;
}

int irq_pulse(struct vm *vm, uint32_t gsi)
{
	int ret = irq_line(vm, gsi, true);

	return ret ? ret : irq_line(vm, gsi, false);
}

int irq_pic_mask_all(struct vm *vm)
{
	struct kvm_irqchip c;
	int chip, ret;

	if (!vm_has_irqchip(vm))
		return -ENODEV;
	for (chip = KVM_IRQCHIP_PIC_MASTER; chip <= KVM_IRQCHIP_PIC_SLAVE;
	     chip++) {
		memset(&c, 0, sizeof(c));
		c.chip_id = (uint32_t)chip;
		ret = kvm_ioctl(vm_fd(vm), KVM_GET_IRQCHIP, &c);
		if (ret < 0)
			return ret;
		c.chip.pic.imr = 0xff;
		ret = kvm_ioctl(vm_fd(vm), KVM_SET_IRQCHIP, &c);
		if (ret < 0)
			return ret;
	}
	return 0;
}
