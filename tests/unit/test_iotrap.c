/* SPDX-License-Identifier: MIT */
#include "kernel/iotrap.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kernel/util/log.h"
#include "kernel/vcpu.h"
#include "tests/unit/unit_tests.h"

struct dev_state {
	uint32_t reg;
	unsigned int calls;
	uint64_t last_addr;
	volatile int in_handler;
	volatile int release;
};

static int dev_fn(struct vcpu *vcpu __attribute__((unused)), uint64_t addr,
		  void *data, uint32_t len, bool is_write, void *opaque)
{
	struct dev_state *d = opaque;

	d->calls++;
	d->last_addr = addr;
	if (is_write)
		memcpy(&d->reg, data, len < 4 ? len : 4);
	else
		memcpy(data, &d->reg, len < 4 ? len : 4);
	return VCPU_CONTINUE;
}

static void test_iotrap_dispatch_and_overlap(void)
{
	struct dev_state d = { 0 };
	struct iotrap *io;
	uint32_t v = 0x12345678;

	TEST_ASSERT(iotrap_create(IOTRAP_MMIO, &io) == 0, "create");
	TEST_ASSERT(iotrap_register(io, 0x1000, 0x100, dev_fn, &d) == 0,
		    "register");
	TEST_ASSERT(iotrap_register(io, 0x10ff, 1, dev_fn, &d) == -EEXIST,
		    "overlap at the end accepted");
	TEST_ASSERT(iotrap_register(io, 0xf00, 0x101, dev_fn, &d) == -EEXIST,
		    "overlap at the start accepted");
	TEST_ASSERT(iotrap_register(io, 0x1100, 0x10, dev_fn, &d) == 0,
		    "adjacent range refused");
	TEST_ASSERT(iotrap_register(io, 5, 0, dev_fn, &d) == -EINVAL,
		    "empty range accepted");
	TEST_ASSERT(iotrap_register(io, ~0ULL - 1, 4, dev_fn, &d) == -EINVAL,
		    "wrapping range accepted");

	iotrap_dispatch(io, NULL, 0x1010, &v, 4, true);
	TEST_ASSERT(d.reg == 0x12345678 && d.last_addr == 0x1010,
		    "write: reg %#x addr %#llx", d.reg,
		    (unsigned long long)d.last_addr);
	v = 0;
	iotrap_dispatch(io, NULL, 0x1004, &v, 4, false);
	TEST_ASSERT(v == 0x12345678, "read %#x", v);
	TEST_ASSERT(iotrap_unregister(io, 0x1000) == 0, "unregister");
	TEST_ASSERT(iotrap_unregister(io, 0x1000) == -ENOENT,
		    "double unregister");
	iotrap_destroy(io);
}

static void test_iotrap_unclaimed_reads_ones(void)
{
	struct iotrap *io;
	uint8_t buf[8];
	enum log_level lvl = log_get_level();
	struct dev_state d = { 0 };

	TEST_ASSERT(iotrap_create(IOTRAP_PIO, &io) == 0, "create");
	TEST_ASSERT(iotrap_register(io, 0x3f8, 8, dev_fn, &d) == 0, "reg");
	TEST_ASSERT(iotrap_register(io, 0xfffe, 4, dev_fn, &d) == -EINVAL,
		    "port range past 64 KiB accepted");
	log_set_level(LOG_ERR);
	memset(buf, 0, sizeof(buf));
	iotrap_dispatch(io, NULL, 0x80, buf, 4, false);
	TEST_ASSERT(buf[0] == 0xff && buf[3] == 0xff && buf[4] == 0,
		    "unclaimed read gave %02x %02x %02x", buf[0], buf[3],
		    buf[4]);
	/* Straddling the end of a range is not a hit either. */
	iotrap_dispatch(io, NULL, 0x3fe, buf, 4, true);
	iotrap_dispatch(io, NULL, 0x80, buf, 1, true);
	log_set_level(lvl);
	TEST_ASSERT(iotrap_unclaimed(io) == 3, "unclaimed count %llu",
		    (unsigned long long)iotrap_unclaimed(io));
	TEST_ASSERT(d.calls == 0, "device called %u times", d.calls);
	iotrap_destroy(io);
}

/* Quiet ranges: read as all ones and counted, not warned about. */
static void test_iotrap_quiet(void)
{
	enum log_level lvl = log_get_level();
	char log[512] = { 0 };
	struct iotrap *io;
	uint8_t buf[2] = { 0 };
	FILE *f = tmpfile();
	int saved, i, ret = 0;

	TEST_ASSERT(f && iotrap_create(IOTRAP_PIO, &io) == 0, "create");
	TEST_ASSERT(iotrap_quiet(io, 0x2e, 0) == -EINVAL, "empty range");
	TEST_ASSERT(iotrap_quiet(io, ~0ULL, 2) == -EINVAL, "wrapping range");
	for (i = 0; i < IOTRAP_MAX_QUIET && !ret; i++)
		ret = iotrap_quiet(io, 0x2e + 0x100 * (uint64_t)i, 2);
	TEST_ASSERT(ret == 0, "quiet range %d: %d", i, ret);
	TEST_ASSERT(iotrap_quiet(io, 0x4e, 2) == -ENOSPC, "a 17th range");
	log_set_level(LOG_WARN);
	fflush(stderr);
	saved = dup(2);
	dup2(fileno(f), 2);
	iotrap_dispatch(io, NULL, 0x2f, buf, 1, false);
	iotrap_dispatch(io, NULL, 0x2e, buf + 1, 1, true);
	iotrap_dispatch(io, NULL, 0x30, buf, 1, false);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	log_set_level(lvl);
	rewind(f);
	TEST_ASSERT(fread(log, 1, sizeof(log) - 1, f) > 0, "nothing logged");
	fclose(f);
	TEST_ASSERT(strstr(log, "0x30 ") && !strstr(log, "0x2e") &&
			    !strstr(log, "0x2f"),
		    "log: %s", log);
	TEST_ASSERT(buf[0] == 0xff, "quiet read gave %#x", buf[0]);
	TEST_ASSERT(iotrap_unclaimed(io) == 3, "unclaimed count %llu",
		    (unsigned long long)iotrap_unclaimed(io));
	iotrap_destroy(io);
}

static int slow_fn(struct vcpu *vcpu __attribute__((unused)),
		   uint64_t addr __attribute__((unused)),
		   void *data __attribute__((unused)),
		   uint32_t len __attribute__((unused)),
		   bool is_write __attribute__((unused)), void *opaque)
{
	struct dev_state *d = opaque;

	__atomic_store_n(&d->in_handler, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&d->release, __ATOMIC_SEQ_CST))
		usleep(100);
	d->calls++;
	__atomic_store_n(&d->in_handler, 0, __ATOMIC_SEQ_CST);
	return VCPU_CONTINUE;
}

struct dispatch_arg {
	struct iotrap *io;
};

static void *dispatcher(void *arg)
{
	struct dispatch_arg *a = arg;
	uint32_t v = 1;

	iotrap_dispatch(a->io, NULL, 0x2000, &v, 4, true);
	return NULL;
}

static void *unregisterer(void *arg)
{
	struct dispatch_arg *a = arg;

	return (void *)(intptr_t)iotrap_unregister(a->io, 0x2000);
}

/* Unregistering waits for a handler in flight, so its state stays valid. */
static void test_iotrap_unregister_waits_for_handler(void)
{
	struct dev_state d = { 0 };
	struct dispatch_arg a;
	pthread_t t1, t2;
	void *ret;
	int i;

	TEST_ASSERT(iotrap_create(IOTRAP_MMIO, &a.io) == 0, "create");
	TEST_ASSERT(iotrap_register(a.io, 0x2000, 0x10, slow_fn, &d) == 0,
		    "register");
	pthread_create(&t1, NULL, dispatcher, &a);
	for (i = 0;
	     i < 10000 && !__atomic_load_n(&d.in_handler, __ATOMIC_SEQ_CST);
	     i++)
		usleep(100);
	TEST_ASSERT(d.in_handler, "handler never entered");
	pthread_create(&t2, NULL, unregisterer, &a);
	usleep(20000);
	/* Still inside: unregister must not have returned. */
	TEST_ASSERT(d.in_handler == 1 && d.calls == 0, "handler state");
	__atomic_store_n(&d.release, 1, __ATOMIC_SEQ_CST);
	pthread_join(t1, NULL);
	pthread_join(t2, &ret);
	TEST_ASSERT((intptr_t)ret == 0, "unregister returned %ld",
		    (long)(intptr_t)ret);
	TEST_ASSERT(d.calls == 1, "calls %u", d.calls);
	iotrap_destroy(a.io);
}

const struct test_case iotrap_tests[] = {
	{ "dispatch_and_overlap", test_iotrap_dispatch_and_overlap },
	{ "unclaimed_reads_ones", test_iotrap_unclaimed_reads_ones },
	{ "quiet", test_iotrap_quiet },
	{ "unregister_waits_for_handler",
	  test_iotrap_unregister_waits_for_handler },
	{ NULL, NULL },
};
