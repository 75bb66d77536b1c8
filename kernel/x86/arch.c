/* SPDX-License-Identifier: MIT */
#include "kernel/x86/vcpu_arch.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernel/kvm_ioctl.h"
#include "kernel/util/log.h"
#include "kernel/vm_priv.h"

/* Just below 4 GiB, where KVM's documentation suggests; 3 + 1 pages. */
#define X86_TSS_ADDR 0xfffbd000UL
#define X86_IDENTITY_MAP_ADDR 0xfffbc000UL

int vm_arch_init(struct vm *vm)
{
	uint64_t idmap = X86_IDENTITY_MAP_ADDR;
	int ret;

	ret = kvm_ioctl_val(vm->vm_fd, KVM_SET_TSS_ADDR, X86_TSS_ADDR);
	if (ret < 0) {
		pr_err("KVM_SET_TSS_ADDR: %s", strerror(-ret));
		return ret;
	}
	if (kvm_check_cap(vm->vm_fd, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) {
		ret = kvm_ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
		if (ret < 0) {
			pr_err("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(-ret));
			return ret;
		}
	}
	if (!vm->cfg.no_irqchip) {
		if (kvm_check_cap(vm->vm_fd, KVM_CAP_IRQCHIP) <= 0) {
			pr_err("KVM lacks KVM_CAP_IRQCHIP (in-kernel PIC/IOAPIC/LAPIC)");
			return -ENOTSUP;
		}
		ret = kvm_ioctl_val(vm->vm_fd, KVM_CREATE_IRQCHIP, 0);
		if (ret < 0) {
			pr_err("KVM_CREATE_IRQCHIP: %s", strerror(-ret));
			return ret;
		}
		vm->irqchip = true;
	}
	if (vm->cfg.pit) {
		struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

		if (!vm->irqchip ||
		    kvm_check_cap(vm->vm_fd, KVM_CAP_PIT2) <= 0) {
			pr_err("the in-kernel PIT needs KVM_CAP_PIT2 and the in-kernel irqchip");
			return -ENOTSUP;
		}
		ret = kvm_ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit);
		if (ret < 0) {
			pr_err("KVM_CREATE_PIT2: %s", strerror(-ret));
			return ret;
		}
	}
	return 0;
}

#define CPUID_MAX_ENTRIES 256

static pthread_mutex_t cpuid_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm_cpuid2 *cpuid_cache;

int x86_supported_cpuid(int kvm_fd, const struct kvm_cpuid2 **out)
{
	struct kvm_cpuid2 *c;
	int ret = 0;

	pthread_mutex_lock(&cpuid_lock);
	if (cpuid_cache)
		goto done;
	c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES *
					   sizeof(struct kvm_cpuid_entry2));
	if (!c) {
		ret = -ENOMEM;
		goto done;
	}
	c->nent = CPUID_MAX_ENTRIES;
	ret = kvm_ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c);
	if (ret < 0) {
		pr_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(-ret));
		free(c);
		goto done;
	}
	ret = 0;
	cpuid_cache = c;
done:
	if (!ret)
		*out = cpuid_cache;
	pthread_mutex_unlock(&cpuid_lock);
	return ret;
}

int x86_vcpu_cpuid(struct vcpu *vcpu, struct kvm_cpuid2 **out)
{
	struct kvm_cpuid2 *c;
	int ret;

	c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES *
					   sizeof(struct kvm_cpuid_entry2));
	if (!c)
		return -ENOMEM;
	c->nent = CPUID_MAX_ENTRIES;
	ret = kvm_ioctl(vcpu->fd, KVM_GET_CPUID2, c);
	if (ret < 0) {
		free(c);
		return ret;
	}
	*out = c;
	return 0;
}

/*
 * Gives the vCPU exactly what KVM supports, with the per-vCPU fields
 * (initial APIC id, x2APIC id) filled in and the hypervisor bit set, and
 * nothing KVM did not offer.
 */
int vcpu_arch_init(struct vcpu *vcpu)
{
	const struct kvm_cpuid2 *sup;
	struct kvm_cpuid2 *c;
	size_t size;
	uint32_t i;
	int ret;

	ret = x86_supported_cpuid(vcpu->vm->kvm_fd, &sup);
	if (ret < 0)
		return ret;
	size = sizeof(*c) + sup->nent * sizeof(struct kvm_cpuid_entry2);
	c = malloc(size);
	if (!c)
		return -ENOMEM;
	memcpy(c, sup, size);
	vcpu->arch.apic_id = vcpu->id;
	for (i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x0000ffffu) |
				 (vcpu->vm->nr_vcpus << 16) |
				 (vcpu->arch.apic_id << 24);
			/* "Running under a hypervisor": KVM leaves this bit
			 * to the VMM; without it a guest never looks at the
			 * KVM leaves (0x40000000: kvmclock, PV EOI, ...). */
			e->ecx |= 1u << 31;
			break;
		case 0xb:
		case 0x1f:
			e->edx = vcpu->arch.apic_id;
			break;
		default:
			break;
		}
	}
	ret = kvm_ioctl(vcpu->fd, KVM_SET_CPUID2, c);
	free(c);
	if (ret < 0)
		pr_err("vCPU %u: KVM_SET_CPUID2: %s", vcpu->id, strerror(-ret));
	return ret;
}

/* Each first applies what a reload staged (vcpu_apply_staged()). */
int vcpu_get_regs(struct vcpu *vcpu, struct kvm_regs *regs)
{
	int ret = vcpu_apply_staged(vcpu);

	return ret < 0 ? ret : kvm_ioctl(vcpu->fd, KVM_GET_REGS, regs);
}

int vcpu_set_regs(struct vcpu *vcpu, const struct kvm_regs *regs)
{
	int ret = vcpu_apply_staged(vcpu);

	return ret < 0 ? ret :
			 kvm_ioctl(vcpu->fd, KVM_SET_REGS,
				   (void *)(uintptr_t)regs);
}

int vcpu_get_sregs(struct vcpu *vcpu, struct kvm_sregs *sregs)
{
	int ret = vcpu_apply_staged(vcpu);

	return ret < 0 ? ret : kvm_ioctl(vcpu->fd, KVM_GET_SREGS, sregs);
}

int vcpu_set_sregs(struct vcpu *vcpu, const struct kvm_sregs *sregs)
{
	int ret = vcpu_apply_staged(vcpu);

	return ret < 0 ? ret :
			 kvm_ioctl(vcpu->fd, KVM_SET_SREGS,
				   (void *)(uintptr_t)sregs);
}
