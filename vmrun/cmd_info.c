/* SPDX-License-Identifier: MIT */
/* vmrun info: what this host's KVM offers, as vmrun sees it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kernel/kvm_ioctl.h"
#include "kernel/util/compiler.h"
#include "kernel/x86/vcpu_arch.h"
#include "vmrun/vmrun.h"

static const struct {
	long cap;
	const char *name;
} caps[] = {
	{ KVM_CAP_USER_MEMORY, "USER_MEMORY" },
	{ KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" },
	{ KVM_CAP_IRQCHIP, "IRQCHIP" },
	{ KVM_CAP_PIT2, "PIT2" },
	{ KVM_CAP_SPLIT_IRQCHIP, "SPLIT_IRQCHIP" },
	{ KVM_CAP_IRQFD, "IRQFD" },
	{ KVM_CAP_IOEVENTFD, "IOEVENTFD" },
	{ KVM_CAP_NR_MEMSLOTS, "NR_MEMSLOTS" },
	{ KVM_CAP_MAX_VCPUS, "MAX_VCPUS" },
	{ KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, "MANUAL_DIRTY_LOG_PROTECT2" },
	{ KVM_CAP_DIRTY_LOG_RING, "DIRTY_LOG_RING (bytes)" },
	{ KVM_CAP_DIRTY_LOG_RING_ACQ_REL, "DIRTY_LOG_RING_ACQ_REL (bytes)" },
	{ KVM_CAP_XSAVE, "XSAVE" },
	{ KVM_CAP_XSAVE2, "XSAVE2 (bytes)" },
	{ KVM_CAP_XCRS, "XCRS" },
	{ KVM_CAP_VCPU_EVENTS, "VCPU_EVENTS" },
	{ KVM_CAP_ADJUST_CLOCK, "ADJUST_CLOCK" },
	{ KVM_CAP_TSC_CONTROL, "TSC_CONTROL" },
	{ KVM_CAP_GET_MSR_FEATURES, "GET_MSR_FEATURES" },
	{ KVM_CAP_READONLY_MEM, "READONLY_MEM" },
	{ KVM_CAP_SYNC_REGS, "SYNC_REGS" },
};

static const struct {
	unsigned int reg; /* 0 ecx, 1 edx */
	unsigned int bit;
	const char *name;
} leaf1[] = {
	{ 1, 0, "fpu" },     { 1, 4, "tsc" },	  { 1, 5, "msr" },
	{ 1, 6, "pae" },     { 1, 8, "cx8" },	  { 1, 9, "apic" },
	{ 1, 15, "cmov" },   { 1, 25, "sse" },	  { 1, 26, "sse2" },
	{ 1, 28, "htt" },    { 0, 0, "sse3" },	  { 0, 9, "ssse3" },
	{ 0, 13, "cx16" },   { 0, 19, "sse4.1" }, { 0, 20, "sse4.2" },
	{ 0, 21, "x2apic" }, { 0, 23, "popcnt" }, { 0, 24, "tsc-deadline" },
	{ 0, 26, "xsave" },  { 0, 28, "avx" },	  { 0, 31, "hypervisor" },
};

int cmd_info(int argc, char **argv)
{
	const struct kvm_cpuid2 *cpuid;
	unsigned int i, j;
	int kvm, vm, v;

	if (argc > 1) {
		if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
			printf("usage: vmrun info\n\nPrints the KVM API version, the capabilities vmrun uses,\na CPUID summary and the dirty-tracking modes available.\n");
			return 0;
		}
		die_msg("info: unexpected argument '%s'", argv[1]);
		return EXIT_USAGE;
	}
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		die_msg("cannot open /dev/kvm: %s", strerror(errno));
		return EXIT_VMM_ERROR;
	}
	printf("KVM API version: %d\n",
	       kvm_ioctl_val(kvm, KVM_GET_API_VERSION, 0));
	vm = kvm_ioctl_val(kvm, KVM_CREATE_VM, 0);
	printf("\ncapabilities (system / VM):\n");
	for (i = 0; i < ARRAY_SIZE(caps); i++) {
		int s = kvm_check_cap(kvm, caps[i].cap);

		v = vm >= 0 ? kvm_check_cap(vm, caps[i].cap) : s;
		printf("  %-32s %d / %d\n", caps[i].name, s, v);
	}
	printf("\ndirty tracking:\n");
	v = kvm_check_cap(kvm, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	printf("  log (bitmap, manual protect)  %s%s\n", v > 0 ? "yes" : "no",
	       v & KVM_DIRTY_LOG_INITIALLY_SET ? ", initially-set" : "");
	v = kvm_check_cap(vm >= 0 ? vm : kvm, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
	if (v <= 0)
		v = kvm_check_cap(vm >= 0 ? vm : kvm, KVM_CAP_DIRTY_LOG_RING);
	if (v > 0)
		printf("  ring                          yes, up to %d entries per vCPU\n",
		       v / 16);
	else
		printf("  ring                          no\n");

	if (x86_supported_cpuid(kvm, &cpuid) == 0) {
		printf("\nKVM_GET_SUPPORTED_CPUID: %u entries\n", cpuid->nent);
		for (i = 0; i < cpuid->nent; i++) {
			const struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

			if (e->function == 0)
				printf("  max basic leaf %#x\n", e->eax);
			if (e->function == 1) {
				printf("  leaf 1:");
				for (j = 0; j < ARRAY_SIZE(leaf1); j++) {
					uint32_t r =
						leaf1[j].reg ? e->edx : e->ecx;

					if (r & (1u << leaf1[j].bit))
						printf(" %s", leaf1[j].name);
				}
				printf("\n");
			}
			if (e->function == 0x80000001)
				printf("  leaf 0x80000001: lm=%u nx=%u 1g-pages=%u\n",
				       (e->edx >> 29) & 1, (e->edx >> 20) & 1,
				       (e->edx >> 26) & 1);
		}
	}
	if (vm >= 0)
		close(vm);
	close(kvm);
	return 0;
}
