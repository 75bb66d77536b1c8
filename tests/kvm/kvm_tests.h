/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_KVM_TESTS_H
#define VMM_TESTS_KVM_TESTS_H

#include "kernel/util/compiler.h"
#include "tests/harness/test_util.h"

extern const struct test_case vm_tests[];
extern const struct test_case mem_tests[];
extern const struct test_case dirty_tests[];
extern const struct test_case pause_tests[];
extern const struct test_case run_tests[];
extern const struct test_case guest_tests[];
extern const struct test_case ctl_tests[];
extern const struct test_case state_tests[];
extern const struct test_case snapshot_tests[];
extern const struct test_case fuzz_tests[];
extern const struct test_case linux_tests[];
/* test_linux_bad.c, one of linux_tests. */
void test_linux_bad_images(void);
extern const struct test_case migrate_tests[];

#endif /* VMM_TESTS_KVM_TESTS_H */
