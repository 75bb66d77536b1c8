/* SPDX-License-Identifier: MIT */
/* Memory objects: sharing by fd, refcounted teardown, bounds. */
#include <errno.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel/mem.h"
#include "kernel/util/log.h"
#include "tests/harness/stamp_vm.h"
#include "tests/kvm/kvm_tests.h"

#define GPA_A (1ULL << 30)
#define SIZE_A (4UL << 20)

/*
 * The guest stamps a page; a plain mmap of the segment's fd, a forked
 * child mapping the fd, and a second VM that imported the fd all see the
 * same bytes, and what the child writes the first VM reads.
 */
static void test_mem_shared_by_fd(void)
{
	struct vm_config cfg = { .nr_vcpus = 1 };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	struct mem_seg *a = stamp_vm_add_mem(s, "A", SIZE_A, GPA_A);
	struct vm *vm2;
	struct mem_seg *imp;
	uint64_t gpa = GPA_A + 7 * 4096, v = 0;
	uint64_t *view;
	int ret, status;
	pid_t pid;

	stamp_vm_boot(s);
	stamp_list(s, 0, 0x5eed, &gpa, 1);

	view = mmap(NULL, SIZE_A, PROT_READ | PROT_WRITE, MAP_SHARED,
		    mem_seg_fd(a), 0);
	TEST_ASSERT(view != MAP_FAILED, "mmap of the segment fd: %s",
		    strerror(errno));
	TEST_ASSERT(view[7 * 512] == 0x5eed, "fd view holds %#llx",
		    (unsigned long long)view[7 * 512]);

	pid = fork();
	TEST_ASSERT(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* The child maps the inherited fd itself. */
		uint64_t *c = mmap(NULL, SIZE_A, PROT_READ | PROT_WRITE,
				   MAP_SHARED, mem_seg_fd(a), 0);

		if (c == MAP_FAILED || c[7 * 512] != 0x5eed)
			_exit(1);
		c[9 * 512] = 0xc41d;
		_exit(0);
	}
	TEST_ASSERT(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
			    WEXITSTATUS(status) == 0,
		    "child saw other bytes (status %#x)", status);
	ret = mem_read(vm_mem(s->vm), GPA_A + 9 * 4096, &v, 8);
	TEST_ASSERT(ret == 0 && v == 0xc41d,
		    "VM reads %#llx after the child's write",
		    (unsigned long long)v);

	/* A second VM maps the same object at another address. */
	ret = vm_create(&cfg, &vm2);
	TEST_ASSERT(ret == 0, "vm_create: %s", strerror(-ret));
	ret = mem_seg_import(vm_mem(vm2), "A-imported", mem_seg_fd(a), SIZE_A,
			     &imp);
	TEST_ASSERT(ret == 0, "import: %s", strerror(-ret));
	ret = mem_map(vm_mem(vm2), imp, 0, 8ULL << 30, SIZE_A, NULL);
	TEST_ASSERT(ret == 0, "map in VM 2: %s", strerror(-ret));
	ret = mem_read(vm_mem(vm2), (8ULL << 30) + 7 * 4096, &v, 8);
	TEST_ASSERT(ret == 0 && v == 0x5eed, "VM 2 reads %#llx",
		    (unsigned long long)v);
	gpa = GPA_A + 7 * 4096;
	stamp_list(s, 0, 0x5eed2, &gpa, 1);
	ret = mem_read(vm_mem(vm2), (8ULL << 30) + 7 * 4096, &v, 8);
	TEST_ASSERT(ret == 0 && v == 0x5eed2, "VM 2 reads %#llx after restamp",
		    (unsigned long long)v);
	/* Importing more than the object holds is refused. */
	{
		struct mem_seg *big;
		enum log_level l = log_get_level();

		log_set_level(LOG_QUIET);
		ret = mem_seg_import(vm_mem(vm2), "big", mem_seg_fd(a),
				     SIZE_A * 2, &big);
		log_set_level(l);
		TEST_ASSERT(ret == -EINVAL, "oversized import: %d", ret);
	}
	mem_seg_put(imp);
	vm_destroy(vm2);
	munmap(view, SIZE_A);
	mem_seg_put(a);
	stamp_vm_destroy(s);
}

/*
 * References: owner + one per map; the object lives until the last is
 * dropped, even past the VM; then no fd and no mapping remain.
 */
static void test_mem_refcount_teardown(void)
{
	struct vm_config cfg = { .nr_vcpus = 1 };
	struct proc_census before, mid, after;
	struct mem_map *m1, *m2;
	struct mem_seg *seg;
	struct vm *vm;
	int ret;

	/* Warm up allocator caches so the counts compare cleanly. */
	ret = vm_create(&cfg, &vm);
	TEST_ASSERT(ret == 0, "vm_create: %s", strerror(-ret));
	vm_destroy(vm);

	proc_census(&before);
	ret = vm_create(&cfg, &vm);
	TEST_ASSERT(ret == 0, "vm_create: %s", strerror(-ret));
	ret = mem_seg_create(vm_mem(vm), "rc", 2 << 20, &seg);
	TEST_ASSERT(ret == 0, "seg: %s", strerror(-ret));
	TEST_ASSERT(mem_seg_refs(seg) == 1, "refs %u", mem_seg_refs(seg));
	TEST_ASSERT(mem_map(vm_mem(vm), seg, 0, 1ULL << 30, 2 << 20, &m1) == 0,
		    "map 1");
	TEST_ASSERT(mem_map(vm_mem(vm), seg, 1 << 20, 3ULL << 30, 1 << 20,
			    &m2) == 0,
		    "map 2 (second half)");
	TEST_ASSERT(mem_seg_refs(seg) == 3, "refs %u", mem_seg_refs(seg));
	mem_seg_get(seg); /* a saver's reference, say */
	TEST_ASSERT(mem_unmap(vm_mem(vm), m2) == 0, "unmap 2");
	TEST_ASSERT(mem_seg_refs(seg) == 3, "refs %u", mem_seg_refs(seg));
	mem_seg_put(seg); /* the owner lets go; map 1 and the saver remain */
	vm_destroy(vm);	  /* drops map 1 */
	TEST_ASSERT(mem_seg_refs(seg) == 1, "refs after VM gone: %u",
		    mem_seg_refs(seg));
	proc_census(&mid);
	TEST_ASSERT(
		mid.memfd_maps == before.memfd_maps + 1,
		"the object should outlive the VM: %d memfd maps, %d before",
		mid.memfd_maps, before.memfd_maps);
	TEST_ASSERT(((const uint8_t *)mem_seg_hva(seg))[4095] == 0,
		    "object unreadable");
	mem_seg_put(seg);
	proc_census(&after);
	TEST_ASSERT(after.fds == before.fds, "fds %d before, %d after",
		    before.fds, after.fds);
	TEST_ASSERT(after.memfd_maps == before.memfd_maps,
		    "memfd maps %d before, %d after", before.memfd_maps,
		    after.memfd_maps);
	TEST_ASSERT(SANITIZED || after.maps == before.maps,
		    "maps %d before, %d after", before.maps, after.maps);
}

static void test_mem_bounds_refused(void)
{
	struct vm_config cfg = { .nr_vcpus = 1 };
	struct stamp_vm *s = stamp_vm_create(&cfg);
	struct mem_seg *a = stamp_vm_add_mem(s, "A", SIZE_A, GPA_A);
	struct vm_mem *mem = vm_mem(s->vm);
	uint8_t buf[64];
	enum log_level l = log_get_level();
	int ret;

	memset(buf, 0x77, sizeof(buf));
	TEST_ASSERT(mem_read(mem, GPA_A - 8, buf, 8) == -EFAULT,
		    "read below the map");
	TEST_ASSERT(mem_write(mem, GPA_A + SIZE_A - 8, buf, 16) == -EFAULT,
		    "write straddling the end");
	TEST_ASSERT(mem_write(mem, ~0ULL - 4, buf, 8) == -EFAULT,
		    "write wrapping the address space");
	TEST_ASSERT(mem_fill(mem, 5ULL << 40, 0, 4096) == -EFAULT,
		    "fill far away");
	TEST_ASSERT(mem_gpa_to_hva_ro(mem, GPA_A + SIZE_A, 1) == NULL,
		    "translation past the end");
	TEST_ASSERT(mem_dma_begin(mem, GPA_A + SIZE_A - 1, 2) == NULL,
		    "DMA straddling the end");
	TEST_ASSERT(mem_seg_write(a, SIZE_A - 4, buf, 8) == -EFAULT,
		    "segment write past the end");
	/* Nothing was written by the refused calls. */
	TEST_ASSERT(((const uint8_t *)mem_seg_hva(a))[SIZE_A - 1] == 0,
		    "a refused write landed");

	log_set_level(LOG_QUIET);
	TEST_ASSERT(mem_map(mem, a, 0, GPA_A + 4096, 4096, NULL) == -EEXIST,
		    "overlapping map accepted");
	TEST_ASSERT(mem_map(mem, a, 100, 8ULL << 30, 4096, NULL) == -EINVAL,
		    "unaligned offset accepted");
	TEST_ASSERT(mem_map(mem, a, 0, (8ULL << 30) + 1, 4096, NULL) == -EINVAL,
		    "unaligned gpa accepted");
	TEST_ASSERT(mem_map(mem, a, SIZE_A - 4096, 8ULL << 30, 8192, NULL) ==
			    -EINVAL,
		    "map past the segment's end accepted");
	TEST_ASSERT(mem_seg_create(mem, "odd", 5000, &a) == -EINVAL,
		    "unaligned segment size accepted");
	log_set_level(l);

	stamp_vm_boot(s);
	/* Maps change only with every vCPU frozen. */
	ret = mem_map(mem, a, 0, 8ULL << 30, 4096, NULL);
	TEST_ASSERT(ret == -EBUSY, "map while running: %d", ret);
	TEST_ASSERT(vm_pause(s->vm) == 0, "pause");
	ret = mem_map(mem, a, 0, 8ULL << 30, 4096, NULL);
	TEST_ASSERT(ret == 0, "map while paused: %s", strerror(-ret));
	vm_resume(s->vm);
	mem_seg_put(a);
	stamp_vm_destroy(s);
}

const struct test_case mem_tests[] = {
	{ "shared_by_fd", test_mem_shared_by_fd },
	{ "refcount_teardown", test_mem_refcount_teardown },
	{ "bounds_refused", test_mem_bounds_refused },
	{ NULL, NULL },
};
