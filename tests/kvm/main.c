/* SPDX-License-Identifier: MIT */
/* Tests that need /dev/kvm. Without it they fail; they never skip. */
#include "kernel/util/compiler.h"
#include "tests/kvm/kvm_tests.h"

static const struct test_suite suites[] = {
	{ "vm", vm_tests, NULL, NULL },
	{ "mem", mem_tests, NULL, NULL },
	{ "dirty", dirty_tests, NULL, NULL },
	{ "pause", pause_tests, NULL, NULL },
	{ "run", run_tests, NULL, NULL },
	{ "guest", guest_tests, NULL, NULL },
	{ "ctl", ctl_tests, NULL, NULL },
	{ "state", state_tests, NULL, NULL },
	{ "snapshot", snapshot_tests, NULL, NULL },
	{ "fuzz", fuzz_tests, NULL, NULL },
	{ "migrate", migrate_tests, NULL, NULL },
	{ "linux", linux_tests, NULL, NULL },
};

int main(int argc, char **argv)
{
	return test_main(suites, ARRAY_SIZE(suites), argc, argv);
}
