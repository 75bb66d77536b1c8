/* SPDX-License-Identifier: MIT */
/*
 * One stream over several connections (migrate/stripe.c): bytes come
 * out as they went in, whatever the sizes of the writes and the flushes
 * between them; chunks out of order, empty, too long or cut short, a
 * connection that ends early and a stalled one are each an error, never
 * wrong bytes or a hang.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include "migrate/migrate_priv.h"
#include "snapshot/stream.h"
#include "tests/unit/unit_tests.h"

#define CONNS 3
#define TOTAL (5u << 20)

struct writer_arg {
	int fds[CONNS];
	const uint8_t *data;
	int ret;
	uint64_t hash;
};

/* Writes TOTAL bytes in pieces of many sizes, flushing now and then. */
static void *writer(void *p)
{
	struct writer_arg *a = p;
	struct stream *s;
	size_t off = 0, step = 1;
	int ret = stripe_open(a->fds, CONNS, true, 10000, &s);

	while (!ret && off < TOTAL) {
		size_t n = MIN(step, TOTAL - off);

		ret = stream_write(s, a->data + off, n);
		off += n;
		step = step * 7 % 700001 + 1;
		if (!ret && off % 3 == 0)
			ret = stream_flush(s);
	}
	if (!ret)
		ret = stream_flush(s);
	if (!ret)
		a->hash = stream_hash(s);
	a->ret = ret;
	stream_close(s);
	return NULL;
}

static void pairs(int a[CONNS], int b[CONNS])
{
	for (int i = 0; i < CONNS; i++) {
		int sv[2];

		TEST_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
				       sv) == 0,
			    "socketpair");
		a[i] = sv[0];
		b[i] = sv[1];
	}
}

static void test_stripe_round_trip(void)
{
	uint8_t *data = malloc(TOTAL), *back = malloc(TOTAL);
	struct writer_arg a = { .data = data };
	int rfds[CONNS];
	struct stream *r;
	pthread_t t;
	size_t off = 0, step = 3;
	uint8_t one;

	TEST_ASSERT(data && back, "memory");
	for (size_t i = 0; i < TOTAL; i++)
		data[i] = (uint8_t)(i * 2654435761u >> 13);
	pairs(a.fds, rfds);
	TEST_ASSERT(stripe_open(rfds, CONNS, false, 10000, &r) == 0, "reader");
	TEST_ASSERT(pthread_create(&t, NULL, writer, &a) == 0, "thread");
	while (off < TOTAL) {
		size_t n = MIN(step, TOTAL - off);

		TEST_ASSERT(stream_read(r, back + off, n) == 0,
			    "reading at %zu: %d", off, stream_error(r));
		off += n;
		step = step * 5 % 900007 + 1;
	}
	pthread_join(t, NULL);
	TEST_ASSERT(a.ret == 0, "writer: %d", a.ret);
	TEST_ASSERT(!memcmp(back, data, TOTAL), "bytes differ");
	TEST_ASSERT(stream_hash(r) == a.hash &&
			    a.hash == XXH3_64bits(data, TOTAL),
		    "hashes differ");
	/* Every connection ended after its last chunk: the stream's end. */
	TEST_ASSERT(stream_read(r, &one, 1) == -ENODATA, "end: %d",
		    stream_error(r));
	stream_close(r);
	free(data);
	free(back);
}

/* A chunk header: length, number. */
static void put_hdr(int fd, uint32_t len, uint32_t seq)
{
	uint8_t h[STRIPE_HEADER];

	put32(h, len);
	put32(h + 4, seq);
	TEST_ASSERT(write(fd, h, sizeof(h)) == sizeof(h), "write");
}

/*
 * Connection 0 carries chunk 0 (8 bytes) whole; connection 1 then gets
 * what @bad_case says; reading 16 bytes must fail with @want.
 */
static void hostile(int bad_case, int want)
{
	static const uint8_t eight[8] = "abcdefgh";
	int wfds[CONNS], rfds[CONNS];
	struct stream *r;
	uint8_t buf[16];
	int ret;

	pairs(wfds, rfds);
	TEST_ASSERT(stripe_open(rfds, CONNS, false, 300, &r) == 0, "reader");
	put_hdr(wfds[0], 8, 0);
	TEST_ASSERT(write(wfds[0], eight, 8) == 8, "write");
	switch (bad_case) {
	case 0: /* chunk 4 where chunk 1 belongs */
		put_hdr(wfds[1], 8, 4);
		TEST_ASSERT(write(wfds[1], eight, 8) == 8, "write");
		break;
	case 1: /* empty */
		put_hdr(wfds[1], 0, 1);
		break;
	case 2: /* longer than a chunk can be */
		put_hdr(wfds[1], STRIPE_CHUNK + 1, 1);
		break;
	case 3: /* cut short, then the end */
		put_hdr(wfds[1], 8, 1);
		TEST_ASSERT(write(wfds[1], eight, 3) == 3, "write");
		shutdown(wfds[1], SHUT_WR);
		break;
	case 4: /* the connection ends before its chunk */
		shutdown(wfds[1], SHUT_WR);
		break;
	case 5: /* nothing comes: the reader's deadline */
		break;
	}
	ret = stream_read(r, buf, sizeof(buf));
	TEST_ASSERT(ret == want, "case %d: %d, expected %d", bad_case, ret,
		    want);
	/* The first chunk came through untouched before the failure. */
	TEST_ASSERT(stream_bytes_read(r) <= 8, "case %d: read %llu", bad_case,
		    (unsigned long long)stream_bytes_read(r));
	stream_close(r);
	for (int i = 0; i < CONNS; i++)
		close(wfds[i]);
}

static void test_stripe_hostile(void)
{
	hostile(0, -EBADMSG);
	hostile(1, -EBADMSG);
	hostile(2, -EBADMSG);
	hostile(3, -EPIPE);
	hostile(4, -EPIPE);
	hostile(5, -ETIMEDOUT);
}

/* A writer whose peer is gone fails, and is not left waiting. */
static void test_stripe_peer_gone(void)
{
	static uint8_t block[STRIPE_CHUNK];
	int wfds[CONNS], rfds[CONNS], ret = 0, i;
	struct stream *w;

	pairs(wfds, rfds);
	for (i = 0; i < CONNS; i++)
		close(rfds[i]);
	TEST_ASSERT(stripe_open(wfds, CONNS, true, 1000, &w) == 0, "writer");
	for (i = 0; i < 64 && !ret; i++)
		ret = stream_write(w, block, sizeof(block));
	if (!ret)
		ret = stream_flush(w);
	TEST_ASSERT(ret == -EPIPE || ret == -ECONNRESET, "%d", ret);
	stream_close(w);
}

const struct test_case stripe_tests[] = {
	{ "round_trip", test_stripe_round_trip },
	{ "hostile", test_stripe_hostile },
	{ "peer_gone", test_stripe_peer_gone },
	{ NULL, NULL },
};
