/* SPDX-License-Identifier: MIT */
#include "kernel/dev/virtq.h"

#include <errno.h>

#include "kernel/util/log.h"
#include "tests/unit/unit_tests.h"
#include "tests/unit/virtio_drv.h"

#define F_INDIRECT (1ULL << VIRTIO_RING_F_INDIRECT_DESC)
#define F_EVENT_IDX (1ULL << VIRTIO_RING_F_EVENT_IDX)
#define F_ALL ((1ULL << VIRTIO_F_VERSION_1) | F_INDIRECT | F_EVENT_IDX)

/* One fixture per test: guest memory, a driver queue, the device side. */
struct fix {
	struct drv_mem m;
	struct drv_queue q;
	struct virtq vq;
	struct virtq_chain c;
	unsigned int faults;
	enum log_level lvl;
};

static void on_fault(struct virtq *vq __unused, void *opaque)
{
	((struct fix *)opaque)->faults++;
}

static struct fix *fix_new(uint16_t size, uint64_t features)
{
	struct fix *f = calloc(1, sizeof(*f));
	int ret;

	drv_mem_init(&f->m);
	drv_queue_init(&f->q, &f->m, size);
	virtq_init(&f->vq, &f->m.mem, 0, on_fault, f);
	ret = drv_virtq(&f->q, &f->vq, features);
	TEST_ASSERT(ret == 0, "enable size %u: %d", size, ret);
	/* Violations are expected here; keep their warnings quiet. */
	f->lvl = log_get_level();
	log_set_level(LOG_ERR);
	return f;
}

static void fix_free(struct fix *f)
{
	log_set_level(f->lvl);
	drv_mem_fini(&f->m);
	free(f);
}

/* Expects the next pop to fail with @err and leave the queue broken. */
#define EXPECT_VIOLATION(f, err)                                             \
	do {                                                                 \
		int r_ = virtq_pop(&(f)->vq, &(f)->c);                       \
		TEST_ASSERT(r_ == (err), "pop returned %d, expected %d", r_, \
			    (err));                                          \
		TEST_ASSERT((f)->vq.s.broken && (f)->faults == 1,            \
			    "broken %u faults %u", (f)->vq.s.broken,         \
			    (f)->faults);                                    \
		r_ = virtq_pop(&(f)->vq, &(f)->c);                           \
		TEST_ASSERT(r_ == -EIO, "pop after violation: %d", r_);      \
		TEST_ASSERT((f)->faults == 1, "faults %u", (f)->faults);     \
	} while (0)

static void test_virtq_single_descriptor(void)
{
	struct fix *f = fix_new(16, F_ALL);
	uint64_t buf = drv_alloc(&f->m, 100, 8);
	struct drv_buf b = { buf, 100, false };
	uint32_t id, len;
	uint16_t head;
	int ret;

	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == -EAGAIN, "empty queue popped");
	head = drv_add(&f->q, &b, 1);
	ret = virtq_pop(&f->vq, &f->c);
	TEST_ASSERT(ret == 0, "pop %d", ret);
	TEST_ASSERT(f->c.head == head && f->c.nr == 1 && f->c.nr_ro == 1 &&
			    f->c.ro_len == 100 && f->c.wr_len == 0,
		    "head %u nr %u nr_ro %u ro %u wr %u", f->c.head, f->c.nr,
		    f->c.nr_ro, f->c.ro_len, f->c.wr_len);
	TEST_ASSERT(f->c.seg[0].gpa == buf && f->c.seg[0].len == 100,
		    "seg %#llx+%u", (unsigned long long)f->c.seg[0].gpa,
		    f->c.seg[0].len);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == -EAGAIN, "popped twice");
	drv_clear_dirty(&f->m);
	TEST_ASSERT(virtq_push(&f->vq, head, 0) == 0, "push");
	TEST_ASSERT(drv_get_used(&f->q, &id, &len) && id == head && len == 0,
		    "used id %u len %u", id, len);
	TEST_ASSERT(drv_used_idx(&f->q) == 1, "used idx %u",
		    drv_used_idx(&f->q));
	TEST_ASSERT(drv_dirty(&f->m, f->q.used), "used ring page not dirty");
	TEST_ASSERT(virtq_push(&f->vq, 16, 0) == -EINVAL, "bad head pushed");
	TEST_ASSERT(f->faults == 0, "faults %u", f->faults);
	fix_free(f);
}

static void test_virtq_chained_descriptors(void)
{
	struct fix *f = fix_new(16, F_ALL);
	uint64_t a = drv_alloc(&f->m, 10, 1), b = drv_alloc(&f->m, 6, 1);
	uint64_t w1 = drv_alloc(&f->m, 3, 1), w2 = drv_alloc(&f->m, 9, 1);
	struct drv_buf bufs[] = {
		{ a, 10, false },
		{ b, 6, false },
		{ w1, 3, true },
		{ w2, 9, true },
	};
	uint8_t out[16], in[12];
	uint32_t id, len;
	unsigned int i;

	for (i = 0; i < 16; i++)
		((uint8_t *)drv_ptr(&f->m, i < 10 ? a + i : b + i - 10))[0] = i;
	drv_add(&f->q, bufs, 4);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	TEST_ASSERT(f->c.nr == 4 && f->c.nr_ro == 2 && f->c.ro_len == 16 &&
			    f->c.wr_len == 12,
		    "nr %u nr_ro %u ro %u wr %u", f->c.nr, f->c.nr_ro,
		    f->c.ro_len, f->c.wr_len);
	TEST_ASSERT(virtq_chain_read(&f->vq, &f->c, 0, out, 16) == 0, "read");
	for (i = 0; i < 16; i++)
		TEST_ASSERT(out[i] == i, "byte %u is %u", i, out[i]);
	TEST_ASSERT(virtq_chain_read(&f->vq, &f->c, 8, out, 9) == -EINVAL,
		    "read past the readable part");
	for (i = 0; i < 12; i++)
		in[i] = 0xa0 + i;
	drv_clear_dirty(&f->m);
	TEST_ASSERT(virtq_chain_write(&f->vq, &f->c, 1, in, 11) == 0, "write");
	TEST_ASSERT(virtq_chain_write(&f->vq, &f->c, 2, in, 11) == -EINVAL,
		    "write past the writable part");
	TEST_ASSERT(((uint8_t *)drv_ptr(&f->m, w1))[1] == 0xa0 &&
			    ((uint8_t *)drv_ptr(&f->m, w2))[0] == 0xa2 &&
			    ((uint8_t *)drv_ptr(&f->m, w2))[8] == 0xaa,
		    "write landed wrong");
	TEST_ASSERT(drv_dirty(&f->m, w2), "written page not dirty");
	TEST_ASSERT(virtq_push(&f->vq, f->c.head, 12) == 0, "push");
	TEST_ASSERT(drv_get_used(&f->q, &id, &len) && id == 0 && len == 12,
		    "used id %u len %u", id, len);
	fix_free(f);
}

static void test_virtq_zero_len_skipped(void)
{
	struct fix *f = fix_new(16, F_ALL);
	uint64_t a = drv_alloc(&f->m, 8, 8);
	struct drv_buf bufs[] = { { a, 8, false },
				  { 0, 0, false },
				  { a, 4, true } };

	drv_add(&f->q, bufs, 3);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	TEST_ASSERT(f->c.nr == 2 && f->c.ro_len == 8 && f->c.wr_len == 4,
		    "nr %u ro %u wr %u", f->c.nr, f->c.ro_len, f->c.wr_len);
	/* Zero-length descriptors still count towards the loop limit. */
	drv_set_desc(&f->q, 5, 0, 0, VIRTQ_DESC_F_NEXT, 5);
	drv_publish(&f->q, 5);
	EXPECT_VIOLATION(f, -ELOOP);
	fix_free(f);
}

static void test_virtq_not_ready(void)
{
	struct fix *f = fix_new(16, F_ALL);

	f->vq.s.ready = 0;
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == -ENODEV, "pop not ready");
	TEST_ASSERT(virtq_push(&f->vq, 0, 0) == -ENODEV, "push not ready");
	TEST_ASSERT(!virtq_should_notify(&f->vq), "notify not ready");
	fix_free(f);
}

static void test_virtq_descriptor_loop(void)
{
	struct fix *f = fix_new(16, F_ALL);
	uint64_t a = drv_alloc(&f->m, 8, 8);

	drv_set_desc(&f->q, 0, a, 8, VIRTQ_DESC_F_NEXT, 1);
	drv_set_desc(&f->q, 1, a, 8, VIRTQ_DESC_F_NEXT, 0);
	drv_publish(&f->q, 0);
	EXPECT_VIOLATION(f, -ELOOP);
	fix_free(f);
}

static void test_virtq_next_to_itself(void)
{
	struct fix *f = fix_new(8, F_ALL);
	uint64_t a = drv_alloc(&f->m, 8, 8);

	drv_set_desc(&f->q, 3, a, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 3);
	drv_publish(&f->q, 3);
	EXPECT_VIOLATION(f, -ELOOP);
	fix_free(f);
}

static void test_virtq_head_out_of_range(void)
{
	struct fix *f = fix_new(16, F_ALL);

	drv_publish(&f->q, 16);
	EXPECT_VIOLATION(f, -ERANGE);
	fix_free(f);
}

static void test_virtq_next_out_of_range(void)
{
	struct fix *f = fix_new(16, F_ALL);
	uint64_t a = drv_alloc(&f->m, 8, 8);

	drv_set_desc(&f->q, 0, a, 8, VIRTQ_DESC_F_NEXT, 0xffff);
	drv_publish(&f->q, 0);
	EXPECT_VIOLATION(f, -ERANGE);
	fix_free(f);
}

static void test_virtq_address_outside_guest(void)
{
	const struct {
		uint64_t addr;
		uint32_t len;
	} bad[] = {
		{ DRV_MEM_BASE - 8, 8 },		/* below */
		{ DRV_MEM_BASE + DRV_MEM_SIZE, 1 },	/* just above */
		{ DRV_MEM_BASE + DRV_MEM_SIZE - 4, 8 }, /* straddles end */
		{ DRV_MEM_BASE - 4, 8 },		/* straddles start */
		{ 0xfffffffffffff000ULL, 0x2000 },	/* wraps */
		{ 0xffffffffffffffffULL, 2 },		/* wraps */
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(bad); i++) {
		struct fix *f = fix_new(16, F_ALL);

		drv_set_desc(&f->q, 0, bad[i].addr, bad[i].len, 0, 0);
		drv_publish(&f->q, 0);
		EXPECT_VIOLATION(f, -EFAULT);
		fix_free(f);
	}
}

static void test_virtq_oversized_chain(void)
{
	struct fix *f = fix_new(512, F_ALL);
	uint64_t a = drv_alloc(&f->m, 8, 8);
	unsigned int i;

	for (i = 0; i < VIRTQ_MAX_SEGS + 1; i++)
		drv_set_desc(&f->q, i, a, 1, VIRTQ_DESC_F_NEXT, i + 1);
	drv_set_desc(&f->q, i, a, 1, 0, 0);
	drv_publish(&f->q, 0);
	EXPECT_VIOLATION(f, -E2BIG);
	fix_free(f);

	/* Exactly VIRTQ_MAX_SEGS is fine. */
	f = fix_new(512, F_ALL);
	a = drv_alloc(&f->m, 8, 8);
	for (i = 0; i < VIRTQ_MAX_SEGS - 1; i++)
		drv_set_desc(&f->q, i, a, 1, VIRTQ_DESC_F_NEXT, i + 1);
	drv_set_desc(&f->q, i, a, 1, 0, 0);
	drv_publish(&f->q, 0);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0 && f->c.nr == VIRTQ_MAX_SEGS,
		    "nr %u", f->c.nr);
	fix_free(f);

	/* An indirect table may be larger than the queue, not the limit. */
	f = fix_new(16, F_ALL);
	a = drv_alloc(&f->m, 8, 8);
	{
		uint64_t table = drv_alloc(&f->m, 300 * 16, 16);

		for (i = 0; i < 299; i++)
			drv_set_table(&f->m, table, i, a, 1, VIRTQ_DESC_F_NEXT,
				      i + 1);
		drv_set_table(&f->m, table, i, a, 1, 0, 0);
		drv_set_desc(&f->q, 0, table, 300 * 16, VIRTQ_DESC_F_INDIRECT,
			     0);
	}
	drv_publish(&f->q, 0);
	EXPECT_VIOLATION(f, -E2BIG);
	fix_free(f);
}

static void test_virtq_readable_after_writable(void)
{
	struct fix *f = fix_new(16, F_ALL);
	uint64_t a = drv_alloc(&f->m, 8, 8);
	struct drv_buf bufs[] = { { a, 8, true }, { a, 8, false } };

	drv_add(&f->q, bufs, 2);
	EXPECT_VIOLATION(f, -EINVAL);
	fix_free(f);
}

static void test_virtq_avail_idx_racing_ahead(void)
{
	struct fix *f = fix_new(16, F_ALL);
	uint64_t a = drv_alloc(&f->m, 8, 8);
	struct drv_buf b = { a, 8, false };

	drv_add(&f->q, &b, 1);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	/* 16 ahead is a full ring: fine; 17 is not. */
	drv_set_avail_idx(&f->q, 1 + 16);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop of a full ring");
	drv_set_avail_idx(&f->q, 2 + 17);
	EXPECT_VIOLATION(f, -EINVAL);
	fix_free(f);
}

/* The 16-bit indexes wrap; nothing may go wrong across 65535 -> 0. */
static void test_virtq_index_wrap(void)
{
	struct fix *f = fix_new(4, F_ALL);
	uint64_t a = drv_alloc(&f->m, 8, 8);
	struct drv_buf b = { a, 8, true };
	uint32_t id, len;
	unsigned int i;

	f->q.avail_idx = 65533;
	f->q.last_used = 65533;
	f->vq.s.last_avail = 65533;
	f->vq.s.used_idx = 65533;
	for (i = 0; i < 10; i++) {
		uint16_t head = drv_add(&f->q, &b, 1);

		TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop %u", i);
		TEST_ASSERT(f->c.head == head, "head %u vs %u", f->c.head,
			    head);
		TEST_ASSERT(virtq_push(&f->vq, head, i) == 0, "push %u", i);
		TEST_ASSERT(drv_get_used(&f->q, &id, &len) && id == head &&
				    len == i,
			    "round %u: id %u len %u", i, id, len);
	}
	TEST_ASSERT(drv_used_idx(&f->q) == (uint16_t)(65533 + 10),
		    "used idx %u", drv_used_idx(&f->q));
	fix_free(f);
}

static void test_virtq_indirect(void)
{
	struct fix *f = fix_new(16, F_ALL);
	uint64_t a = drv_alloc(&f->m, 64, 8);
	uint64_t table = drv_alloc(&f->m, 3 * 16, 16);
	uint32_t id, len;

	drv_set_table(&f->m, table, 0, a, 16, VIRTQ_DESC_F_NEXT, 2);
	drv_set_table(&f->m, table, 2, a + 16, 8, VIRTQ_DESC_F_NEXT, 1);
	drv_set_table(&f->m, table, 1, a + 32, 32, VIRTQ_DESC_F_WRITE, 0);
	/* A direct descriptor, then the indirect one ends the chain. */
	drv_set_desc(&f->q, 4, a + 60, 4, VIRTQ_DESC_F_NEXT, 5);
	drv_set_desc(&f->q, 5, table, 48,
		     VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	drv_publish(&f->q, 4);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	TEST_ASSERT(f->c.head == 4 && f->c.nr == 4 && f->c.nr_ro == 3 &&
			    f->c.ro_len == 28 && f->c.wr_len == 32,
		    "head %u nr %u nr_ro %u ro %u wr %u", f->c.head, f->c.nr,
		    f->c.nr_ro, f->c.ro_len, f->c.wr_len);
	TEST_ASSERT(f->c.seg[3].gpa == a + 32 && f->c.seg[3].write,
		    "seg 3 %#llx", (unsigned long long)f->c.seg[3].gpa);
	TEST_ASSERT(virtq_push(&f->vq, 4, 32) == 0, "push");
	TEST_ASSERT(drv_get_used(&f->q, &id, &len) && id == 4 && len == 32,
		    "used id %u len %u", id, len);
	fix_free(f);
}

/* Each hostile indirect table: the table to write and the error. */
static void indirect_case(uint32_t table_len, uint64_t table_addr,
			  uint16_t flags0, uint16_t next0, uint64_t features,
			  uint16_t desc_flags, int err, const char *what)
{
	struct fix *f = fix_new(16, features);
	uint64_t a = drv_alloc(&f->m, 64, 8);
	uint64_t table = drv_alloc(&f->m, 4 * 16, 16);
	int r;

	drv_set_table(&f->m, table, 0, a, 8, flags0, next0);
	drv_set_table(&f->m, table, 1, a, 8, VIRTQ_DESC_F_NEXT, 0);
	drv_set_table(&f->m, table, 2, a, 8, 0, 0);
	drv_set_desc(&f->q, 0, table_addr ? table_addr : table, table_len,
		     VIRTQ_DESC_F_INDIRECT | desc_flags, 1);
	drv_publish(&f->q, 0);
	r = virtq_pop(&f->vq, &f->c);
	TEST_ASSERT(r == err, "%s: pop %d, expected %d", what, r, err);
	TEST_ASSERT(f->vq.s.broken && f->faults == 1, "%s: broken %u faults %u",
		    what, f->vq.s.broken, f->faults);
	fix_free(f);
}

static void test_virtq_indirect_hostile(void)
{
	indirect_case(64, DRV_MEM_BASE + DRV_MEM_SIZE - 32, 0, 0, F_ALL, 0,
		      -EFAULT, "table past the end of memory");
	indirect_case(64, 0xfffffffffffffff0ULL, 0, 0, F_ALL, 0, -EFAULT,
		      "table wraps");
	indirect_case(40, 0, 0, 0, F_ALL, 0, -EINVAL, "length not x16");
	indirect_case(0, 0, 0, 0, F_ALL, 0, -EINVAL, "empty table");
	indirect_case(64, 0, VIRTQ_DESC_F_INDIRECT, 0, F_ALL, 0, -EINVAL,
		      "nested indirect");
	indirect_case(64, 0, VIRTQ_DESC_F_NEXT, 9, F_ALL, 0, -ERANGE,
		      "next past the table");
	indirect_case(64, 0, VIRTQ_DESC_F_NEXT, 1, F_ALL, 0, -ELOOP,
		      "loop inside the table");
	indirect_case(64, 0, 0, 0, F_ALL, VIRTQ_DESC_F_NEXT, -EINVAL,
		      "INDIRECT with NEXT");
	indirect_case(64, 0, 0, 0, 1ULL << VIRTIO_F_VERSION_1, 0, -EINVAL,
		      "indirect not negotiated");
}

static void test_virtq_enable_rejects_bad_geometry(void)
{
	struct drv_mem m;
	struct drv_queue q;
	struct virtq vq;
	enum log_level lvl = log_get_level();
	struct virtq_state s = { 0 };

	log_set_level(LOG_ERR);
	drv_mem_init(&m);
	drv_queue_init(&q, &m, 64);
	virtq_init(&vq, &m.mem, 0, NULL, NULL);
	TEST_ASSERT(drv_virtq(&q, &vq, F_ALL) == 0, "good geometry refused");

#define BAD(field, val, what)                                          \
	do {                                                           \
		virtq_reset(&vq);                                      \
		vq.s.size = q.size;                                    \
		vq.s.desc = q.desc;                                    \
		vq.s.avail = q.avail;                                  \
		vq.s.used = q.used;                                    \
		vq.s.field = (val);                                    \
		TEST_ASSERT(virtq_enable(&vq, F_ALL, 64) == -EINVAL && \
				    !vq.s.ready,                       \
			    "%s accepted", what);                      \
	} while (0)

	BAD(size, 0, "size 0");
	BAD(size, 48, "size not a power of two");
	BAD(size, 128, "size above the maximum");
	BAD(desc, q.desc + 8, "misaligned descriptor table");
	BAD(avail, q.avail + 1, "misaligned avail ring");
	BAD(used, q.used + 2, "misaligned used ring");
	BAD(desc, DRV_MEM_BASE + DRV_MEM_SIZE - 256, "table past memory");
	BAD(used, DRV_MEM_BASE + DRV_MEM_SIZE - 8, "used ring past memory");
	BAD(avail, 0xfffffffffffffffeULL, "avail ring wraps");
#undef BAD
	virtq_reset(&vq);
	vq.s.size = 32768;
	vq.s.desc = q.desc;
	TEST_ASSERT(virtq_enable(&vq, F_ALL, 65536) == -EINVAL,
		    "max size above 32768 accepted");
	s.ready = 1;
	s.size = 16;
	TEST_ASSERT(virtq_state_check(&s, 16) == 0, "good state refused");
	s.broken = 2;
	TEST_ASSERT(virtq_state_check(&s, 16) == -EINVAL, "flag 2 accepted");
	drv_mem_fini(&m);
	log_set_level(lvl);
}

static void test_virtq_event_idx_suppression(void)
{
	struct fix *f = fix_new(16, F_ALL);
	uint64_t a = drv_alloc(&f->m, 8, 8);
	struct drv_buf b = { a, 8, true };
	unsigned int i;

	/* used_event 0: interrupt when used idx moves past 0. */
	drv_set_used_event(&f->q, 0);
	for (i = 0; i < 4; i++)
		drv_add(&f->q, &b, 1);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	TEST_ASSERT(virtq_push(&f->vq, f->c.head, 1) == 0, "push");
	TEST_ASSERT(virtq_should_notify(&f->vq), "first buffer: no notify");
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	TEST_ASSERT(virtq_push(&f->vq, f->c.head, 1) == 0, "push");
	TEST_ASSERT(!virtq_should_notify(&f->vq),
		    "notified although used_event was passed already");
	TEST_ASSERT(!virtq_should_notify(&f->vq), "notified with no new use");
	/* Driver asks for an interrupt once entry 3 is used (idx 3 -> 4). */
	drv_set_used_event(&f->q, 3);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	TEST_ASSERT(virtq_push(&f->vq, f->c.head, 1) == 0, "push");
	TEST_ASSERT(!virtq_should_notify(&f->vq), "notified early");
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	TEST_ASSERT(virtq_push(&f->vq, f->c.head, 1) == 0, "push");
	TEST_ASSERT(virtq_should_notify(&f->vq), "missed used_event 3");
	/* NO_INTERRUPT is ignored under EVENT_IDX. */
	drv_set_avail_flags(&f->q, VIRTQ_AVAIL_F_NO_INTERRUPT);
	drv_set_used_event(&f->q, 4);
	drv_add(&f->q, &b, 1);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	TEST_ASSERT(virtq_push(&f->vq, f->c.head, 1) == 0, "push");
	TEST_ASSERT(virtq_should_notify(&f->vq),
		    "flag honoured with EVENT_IDX");

	/* Rearm publishes avail_event and reports late arrivals. */
	TEST_ASSERT(!virtq_rearm(&f->vq), "rearm on an empty ring");
	TEST_ASSERT(drv_avail_event(&f->q) == 5, "avail_event %u",
		    drv_avail_event(&f->q));
	drv_add(&f->q, &b, 1);
	TEST_ASSERT(virtq_rearm(&f->vq), "rearm missed a new buffer");
	fix_free(f);
}

static void test_virtq_no_interrupt_flag(void)
{
	struct fix *f = fix_new(16, 1ULL << VIRTIO_F_VERSION_1);
	uint64_t a = drv_alloc(&f->m, 8, 8);
	struct drv_buf b = { a, 8, true };

	TEST_ASSERT(!virtq_should_notify(&f->vq), "notify with nothing used");
	drv_add(&f->q, &b, 1);
	drv_add(&f->q, &b, 1);
	drv_set_avail_flags(&f->q, VIRTQ_AVAIL_F_NO_INTERRUPT);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	TEST_ASSERT(virtq_push(&f->vq, f->c.head, 1) == 0, "push");
	TEST_ASSERT(!virtq_should_notify(&f->vq), "NO_INTERRUPT ignored");
	drv_set_avail_flags(&f->q, 0);
	TEST_ASSERT(virtq_pop(&f->vq, &f->c) == 0, "pop");
	TEST_ASSERT(virtq_push(&f->vq, f->c.head, 1) == 0, "push");
	TEST_ASSERT(virtq_should_notify(&f->vq), "no notify without the flag");
	TEST_ASSERT(drv_avail_event(&f->q) == 0 && !virtq_rearm(&f->vq) &&
			    drv_avail_event(&f->q) == 0,
		    "avail_event written without EVENT_IDX");
	fix_free(f);
}

static uint64_t rnd(uint64_t *seed)
{
	*seed ^= *seed << 13;
	*seed ^= *seed >> 7;
	*seed ^= *seed << 17;
	return *seed;
}

static bool seg_inside(const struct virtq_seg *sg)
{
	return sg->gpa >= DRV_MEM_BASE &&
	       sg->gpa + sg->len <= DRV_MEM_BASE + DRV_MEM_SIZE;
}

/*
 * Random descriptor tables, rings and indexes: the walker must never
 * touch memory outside the guest (ASan would tell) and every chain it
 * accepts must lie inside guest memory.
 */
static void test_virtq_random_tables(void)
{
	struct fix *f = fix_new(8, F_ALL);
	uint64_t table = drv_alloc(&f->m, 8 * 16, 16),
		 seed = 0x9e3779b97f4a7c15;
	uint16_t *ring = drv_ptr(&f->m, f->q.avail + 4);
	unsigned int iter, i, accepted = 0, rejected = 0;
	int r;

	for (iter = 0; iter < 5000; iter++) {
		for (i = 0; i < 8; i++) {
			uint64_t addr =
				DRV_MEM_BASE + rnd(&seed) % DRV_MEM_SIZE;
			uint32_t len = rnd(&seed) % 4096;
			uint16_t flags = rnd(&seed) & 7;

			if (!(rnd(&seed) % 4))
				addr = rnd(&seed);
			if (!(rnd(&seed) % 4))
				len = rnd(&seed);
			if ((flags & VIRTQ_DESC_F_INDIRECT) && rnd(&seed) % 2) {
				addr = table;
				len = 16 * (rnd(&seed) % 9);
			}
			drv_set_desc(&f->q, i, addr, len, flags,
				     rnd(&seed) % 10);
			drv_set_table(&f->m, table, i, addr, len, flags & 3,
				      rnd(&seed) % 10);
			ring[i] = rnd(&seed) % 10;
		}
		drv_set_avail_idx(&f->q, rnd(&seed) % 12);
		f->faults = 0;
		TEST_ASSERT(drv_virtq(&f->q, &f->vq, F_ALL) == 0, "enable");
		while (!(r = virtq_pop(&f->vq, &f->c))) {
			for (i = 0; i < f->c.nr; i++)
				TEST_ASSERT(seg_inside(&f->c.seg[i]),
					    "segment %#llx+%u outside memory",
					    (unsigned long long)f->c.seg[i].gpa,
					    f->c.seg[i].len);
			accepted++;
			TEST_ASSERT(virtq_push(&f->vq, f->c.head, 0) == 0,
				    "push");
		}
		TEST_ASSERT(r == -EAGAIN || (f->faults == 1 && r != -EIO),
			    "pop %d faults %u", r, f->faults);
		rejected += r != -EAGAIN;
	}
	TEST_ASSERT(accepted > 500 && rejected > 500,
		    "poor coverage: %u accepted, %u rejected", accepted,
		    rejected);
	fix_free(f);
}

const struct test_case virtq_tests[] = {
	{ "single_descriptor", test_virtq_single_descriptor },
	{ "chained_descriptors", test_virtq_chained_descriptors },
	{ "zero_len_skipped", test_virtq_zero_len_skipped },
	{ "not_ready", test_virtq_not_ready },
	{ "descriptor_loop", test_virtq_descriptor_loop },
	{ "next_to_itself", test_virtq_next_to_itself },
	{ "head_out_of_range", test_virtq_head_out_of_range },
	{ "next_out_of_range", test_virtq_next_out_of_range },
	{ "address_outside_guest", test_virtq_address_outside_guest },
	{ "oversized_chain", test_virtq_oversized_chain },
	{ "readable_after_writable", test_virtq_readable_after_writable },
	{ "avail_idx_racing_ahead", test_virtq_avail_idx_racing_ahead },
	{ "index_wrap", test_virtq_index_wrap },
	{ "indirect", test_virtq_indirect },
	{ "indirect_hostile", test_virtq_indirect_hostile },
	{ "enable_rejects_bad_geometry",
	  test_virtq_enable_rejects_bad_geometry },
	{ "event_idx_suppression", test_virtq_event_idx_suppression },
	{ "no_interrupt_flag", test_virtq_no_interrupt_flag },
	{ "random_tables", test_virtq_random_tables },
	{ NULL, NULL },
};
