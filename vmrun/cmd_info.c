/* SPDX-License-Identifier: MIT */
/* vmrun info: what this host's KVM offers, as vmrun sees it. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
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

/* A module parameter from sysfs: 1 for Y/1, 0 for N/0, -1 if absent. */
static int module_param(const char *module, const char *param)
{
	char path[128], c = 0;
	int fd;

	snprintf(path, sizeof(path), "/sys/module/%s/parameters/%s", module,
		 param);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (read(fd, &c, 1) != 1)
		c = 0;
	close(fd);
	return c == 'Y' || c == '1' ? 1 : c == 'N' || c == '0' ? 0 : -1;
}

static bool module_loaded(const char *module)
{
	char path[96];

	snprintf(path, sizeof(path), "/sys/module/%s", module);
	return access(path, F_OK) == 0;
}

/*
 * Which KVM this is, from the loaded modules: a short label (kvm_intel ept,
 * kvm_amd npt, kvm_pvm, ... with "shadow" when the hardware's nested paging
 * is off), and whether the CPU logs dirty pages itself (Intel PML).
 */
struct kvm_kind {
	char label[32];
	const char *paging;
	int pml; /* 1 yes, 0 no, -1 not applicable */
};

static void kvm_kind(struct kvm_kind *k)
{
	int p;

	k->pml = -1;
	if (module_loaded("kvm_intel")) {
		p = module_param("kvm_intel", "ept");
		snprintf(k->label, sizeof(k->label), "kvm_intel %s",
			 p ? "ept" : "shadow");
		k->paging = p ? "hardware (Intel EPT)" :
				"shadow (EPT off: kvm_intel ept=0)";
		k->pml = p ? module_param("kvm_intel", "enable_pml") : 0;
	} else if (module_loaded("kvm_amd")) {
		p = module_param("kvm_amd", "npt");
		snprintf(k->label, sizeof(k->label), "kvm_amd %s",
			 p ? "npt" : "shadow");
		k->paging = p ? "hardware (AMD NPT)" :
				"shadow (NPT off: kvm_amd npt=0)";
	} else if (module_loaded("kvm_pvm")) {
		snprintf(k->label, sizeof(k->label), "kvm_pvm");
		k->paging = "shadow (PVM: software KVM, guest ring 0 emulated)";
	} else {
		snprintf(k->label, sizeof(k->label), "kvm");
		k->paging = "unknown (no kvm_intel, kvm_amd or kvm_pvm module)";
	}
}

/* Why /dev/kvm did not open, in words a user can act on. */
static void explain_no_kvm(int err)
{
	die_msg("cannot open /dev/kvm: %s", strerror(err));
	if (err == ENOENT || err == ENXIO || err == ENODEV) {
		fprintf(stderr,
			"  No KVM on this host. Load the module for this CPU (modprobe kvm_intel\n"
			"  or modprobe kvm_amd) after enabling VT-x/AMD-V in the firmware; inside\n"
			"  a VM, ask its host for nested virtualisation. Without hardware support,\n"
			"  tests/kvmhost/kvmhost.sh runs a command inside an emulated host that has\n"
			"  KVM (slow, but hardware-style paging).\n");
	} else if (err == EACCES || err == EPERM) {
		fprintf(stderr,
			"  Permission denied: run as root or join the group that owns /dev/kvm\n"
			"  (usually 'kvm': usermod -aG kvm $USER, then log in again).\n");
	}
}

/*
 * Whether guest RAM (memfd, shared memory) can get transparent huge pages
 * here: vmrun asks for them (MADV_HUGEPAGE), the host's shmem_enabled
 * decides (docs/linux-guest.md, "Guest RAM in huge pages").
 */
static void huge_pages(void)
{
	static const char path[] =
		"/sys/kernel/mm/transparent_hugepage/shmem_enabled";
	char buf[128] = "", *a, *b;
	FILE *f = fopen(path, "r");

	if (f) {
		if (!fgets(buf, sizeof(buf), f))
			buf[0] = 0;
		fclose(f);
	}
	a = strchr(buf, '[');
	b = a ? strchr(a, ']') : NULL;
	if (!b) {
		printf("  huge pages    no (this kernel has no transparent huge pages for shared memory)\n");
		return;
	}
	*b = 0;
	if (!strcmp(a + 1, "never") || !strcmp(a + 1, "deny"))
		printf("  huge pages    no: guest RAM gets 4 KiB pages (shmem_enabled is %s; as root: echo advise > %s)\n",
		       a + 1, path);
	else
		printf("  huge pages    yes (shmem_enabled is %s)\n", a + 1);
}

int cmd_info(int argc, char **argv)
{
	const struct kvm_cpuid2 *cpuid;
	struct kvm_kind kind;
	unsigned int i, j;
	int kvm, vm, v, ring;
	bool label_only = false;

	if (argc > 1) {
		if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
			printf("usage: vmrun info [--kvm]\n\n"
			       "Prints which KVM this host has (module, hardware or shadow paging,\n"
			       "PML, dirty ring), the KVM API version, the capabilities vmrun uses,\n"
			       "a CPUID summary and the dirty-tracking modes available. Exits 1 with\n"
			       "advice when /dev/kvm cannot be opened.\n\n"
			       "  --kvm   print only a one-word-or-two label of the KVM (kvm_intel ept,\n"
			       "          kvm_amd npt, kvm_pvm, ...), for scripts\n");
			return 0;
		}
		if (!strcmp(argv[1], "--kvm") && argc == 2) {
			label_only = true;
		} else {
			die_msg("info: unexpected argument '%s' (see vmrun info --help)",
				argv[1]);
			return EXIT_USAGE;
		}
	}
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) {
		explain_no_kvm(errno);
		return EXIT_VMM_ERROR;
	}
	kvm_kind(&kind);
	vm = kvm_ioctl_val(kvm, KVM_CREATE_VM, 0);
	if (label_only) {
		printf("%s\n", kind.label);
		if (vm >= 0)
			close(vm);
		close(kvm);
		return vm >= 0 ? 0 : EXIT_VMM_ERROR;
	}
	ring = kvm_check_cap(vm >= 0 ? vm : kvm,
			     KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
	if (ring <= 0)
		ring = kvm_check_cap(vm >= 0 ? vm : kvm,
				     KVM_CAP_DIRTY_LOG_RING);
	printf("KVM: %s\n", kind.label);
	printf("  paging        %s\n", kind.paging);
	if (kind.pml >= 0)
		printf("  PML           %s\n",
		       kind.pml ? "yes (the CPU logs dirty pages)" :
				  "no (dirty pages found by write faults)");
	printf("  dirty ring    %s\n",
	       ring > 0 ? "yes" : "no (dirty log only)");
	huge_pages();
	if (vm < 0)
		printf("  VM creation   FAILED: %s\n", strerror(-vm));
	printf("KVM API version: %d\n",
	       kvm_ioctl_val(kvm, KVM_GET_API_VERSION, 0));
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
	if (ring > 0)
		printf("  ring                          yes, up to %d entries per vCPU\n",
		       ring / 16);
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
