/* SPDX-License-Identifier: MIT */
/* VM and vCPU lifecycle, register state, and the stamp guest itself. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "kernel/mem.h"
#include "kernel/vcpu.h"
#include "kernel/vm.h"
#include "tests/harness/stamp_vm.h"
#include "tests/harness/test_util.h"
#include "tests/kvm/kvm_tests.h"

static void test_vm_kvm_available(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	/* Not a skip: a hypervisor not tested on KVM is not tested. */
	TEST_ASSERT(fd >= 0, "cannot open /dev/kvm: %s", strerror(errno));
	close(fd);
}

static void lifecycle(unsigned int nr, bool run)
{
	struct vm_config cfg = { .nr_vcpus = nr };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	struct mem_seg *seg;

	seg = stamp_vm_add_mem(s, "data", 8 << 20, 1UL << 30);
	if (run) {
		stamp_vm_boot(s);
		stamp_stride(s, 0, 7, 1UL << 30, 16, 4096);
	}
	mem_seg_put(seg);
	stamp_vm_destroy(s);
}

static void test_vm_create_destroy_leaves_nothing(void)
{
	struct proc_census a, b;
	unsigned int nr;

	for (nr = 1; nr <= 4; nr += 3) {
		/* Warm up: glibc keeps thread stacks and arenas cached. */
		lifecycle(nr, true);
		proc_census(&a);
		lifecycle(nr, true);
		lifecycle(nr, false);
		proc_census(&b);
		TEST_ASSERT(a.fds == b.fds, "%u vCPUs: fds %d before, %d after",
			    nr, a.fds, b.fds);
		TEST_ASSERT(b.memfd_maps == a.memfd_maps,
			    "%u vCPUs: memfd mappings %d before, %d after", nr,
			    a.memfd_maps, b.memfd_maps);
		/* ASan maps shadow memory as it goes: compare under plain
		 * builds only (the memfd count above holds in both). */
		TEST_ASSERT(SANITIZED || a.maps == b.maps,
			    "%u vCPUs: mappings %d before, %d after", nr,
			    a.maps, b.maps);
		TEST_ASSERT(a.threads == b.threads,
			    "%u vCPUs: threads %d before, %d after", nr,
			    a.threads, b.threads);
	}
}

static void test_vm_rejects_bad_config(void)
{
	struct vm_config cfg = { .nr_vcpus = 0 };
	struct vm *vm = NULL;

	TEST_ASSERT(vm_create(&cfg, &vm) == -EINVAL, "0 vCPUs accepted");
	cfg.nr_vcpus = VM_MAX_VCPUS + 1;
	TEST_ASSERT(vm_create(&cfg, &vm) == -EINVAL, "%u vCPUs accepted",
		    cfg.nr_vcpus);
	cfg.nr_vcpus = 1;
	cfg.dirty = DIRTY_MODE_RING;
	cfg.dirty_ring_size = 1000;
	TEST_ASSERT(vm_create(&cfg, &vm) == -EINVAL,
		    "ring of 1000 entries (not a power of two) accepted");
}

static void test_vcpu_regs_roundtrip(void)
{
	struct vm_config cfg = { .nr_vcpus = 2 };
	struct kvm_regs r, g;
	struct kvm_sregs sr, sg;
	struct vm *vm;
	unsigned int i;
	int ret;

	ret = vm_create(&cfg, &vm);
	TEST_ASSERT(ret == 0, "vm_create: %s", strerror(-ret));
	for (i = 0; i < 2; i++) {
		struct vcpu *v = vm_vcpu(vm, i);
		uint64_t *words = (uint64_t *)&r;
		unsigned int k;

		for (k = 0; k < sizeof(r) / 8; k++)
			words[k] = 0x1111111111111111ULL * (k + 1) + i;
		r.rflags = 0x202 | 0x40; /* reserved bit 1, IF, ZF */
		ret = vcpu_set_regs(v, &r);
		TEST_ASSERT(ret == 0, "set_regs: %s", strerror(-ret));
		ret = vcpu_get_regs(v, &g);
		TEST_ASSERT(ret == 0, "get_regs: %s", strerror(-ret));
		TEST_ASSERT(
			!memcmp(&r, &g, sizeof(r)),
			"vCPU %u: regs differ: rax %#llx/%#llx rip %#llx/%#llx",
			i, r.rax, g.rax, r.rip, g.rip);

		ret = vcpu_get_sregs(v, &sr);
		TEST_ASSERT(ret == 0, "get_sregs: %s", strerror(-ret));
		sr.cs.base = 0x10000 * (i + 1);
		sr.cs.selector = 0x1000;
		sr.cr2 = 0xdeadb000 + i;
		ret = vcpu_set_sregs(v, &sr);
		TEST_ASSERT(ret == 0, "set_sregs: %s", strerror(-ret));
		ret = vcpu_get_sregs(v, &sg);
		TEST_ASSERT(ret == 0, "get_sregs: %s", strerror(-ret));
		TEST_ASSERT(
			sg.cs.base == sr.cs.base && sg.cr2 == sr.cr2 &&
				sg.cs.selector == sr.cs.selector,
			"vCPU %u: sregs differ: cs.base %#llx/%#llx cr2 %#llx/%#llx",
			i, sr.cs.base, sg.cs.base, sr.cr2, sg.cr2);
	}
	vm_destroy(vm);
}

static void test_vm_guest_stamps_pages(void)
{
	struct vm_config cfg = { .nr_vcpus = 2 };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	struct mem_seg *seg = stamp_vm_add_mem(s, "data", 4 << 20, 1UL << 30);
	uint64_t gpas[3] = { 1UL << 30, (1UL << 30) + 5 * 4096,
			     (1UL << 30) + (4 << 20) - 4096 };
	const uint8_t *hva = mem_seg_hva(seg);
	unsigned int i;

	stamp_vm_boot(s);
	stamp_list(s, 1, 0xabcdef, gpas, 3);
	for (i = 0; i < 3; i++) {
		uint64_t off = gpas[i] - (1UL << 30), v;

		memcpy(&v, hva + off, 8);
		TEST_ASSERT(v == 0xabcdef, "page %#llx holds %#llx",
			    (unsigned long long)gpas[i], (unsigned long long)v);
		memcpy(&v, hva + off + 4088, 8);
		TEST_ASSERT(v == 0xabcdef, "page %#llx tail holds %#llx",
			    (unsigned long long)gpas[i], (unsigned long long)v);
	}
	stamp_stride(s, 0, 0x55, (1UL << 30) + 4096, 100, 8192);
	for (i = 0; i < 100; i++) {
		uint64_t v;

		memcpy(&v, hva + 4096 + i * 8192ULL, 8);
		TEST_ASSERT(v == 0x55, "stride page %u holds %#llx", i,
			    (unsigned long long)v);
	}
	mem_seg_put(seg);
	stamp_vm_destroy(s);
}

const struct test_case vm_tests[] = {
	{ "kvm_available", test_vm_kvm_available },
	{ "guest_stamps_pages", test_vm_guest_stamps_pages },
	{ "regs_roundtrip", test_vcpu_regs_roundtrip },
	{ "rejects_bad_config", test_vm_rejects_bad_config },
	{ "create_destroy_leaves_nothing",
	  test_vm_create_destroy_leaves_nothing },
	{ NULL, NULL },
};
