/* SPDX-License-Identifier: MIT */
#include "snapshot/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <xxhash.h>

#include "tests/unit/unit_tests.h"

static void fill_pattern(uint8_t *buf, size_t len, uint32_t seed)
{
	size_t i;

	for (i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (uint8_t)(seed >> 16);
	}
}

static void test_stream_mem_round_trip(void)
{
	static uint8_t data[200000], back[200000];
	struct stream *w, *r;
	const void *out;
	size_t len;

	fill_pattern(data, sizeof(data), 1);
	TEST_ASSERT(stream_open_mem_write(&w) == 0, "open");
	TEST_ASSERT(stream_write(w, data, 10) == 0, "small write");
	TEST_ASSERT(stream_write(w, data + 10, sizeof(data) - 10) == 0,
		    "large write");
	TEST_ASSERT(stream_flush(w) == 0, "flush");
	out = stream_mem_data(w, &len);
	TEST_ASSERT(out && len == sizeof(data) && !memcmp(out, data, len),
		    "buffer holds %zu bytes", len);
	TEST_ASSERT(stream_bytes_written(w) == sizeof(data), "counter %llu",
		    (unsigned long long)stream_bytes_written(w));
	TEST_ASSERT(stream_hash(w) == XXH3_64bits(data, sizeof(data)),
		    "write hash");

	TEST_ASSERT(stream_open_mem_read(out, len, &r) == 0, "open reader");
	TEST_ASSERT(stream_remaining(r) == len, "remaining");
	TEST_ASSERT(stream_read(r, back, 3) == 0, "read");
	TEST_ASSERT(stream_read(r, back + 3, sizeof(back) - 3) == 0, "read");
	TEST_ASSERT(!memcmp(back, data, sizeof(data)), "bytes differ");
	TEST_ASSERT(stream_hash(r) == stream_hash(w), "hashes differ");
	TEST_ASSERT(stream_remaining(r) == 0 && stream_offset(r) == len,
		    "offset %llu", (unsigned long long)stream_offset(r));
	TEST_ASSERT(stream_read(r, back, 1) == -ENODATA, "end of stream");
	stream_close(r);
	stream_close(w);
}

static void test_stream_truncated_read_errors(void)
{
	uint8_t buf[16] = { 0 };
	struct stream *r;

	TEST_ASSERT(stream_open_mem_read(buf, 10, &r) == 0, "open");
	TEST_ASSERT(stream_read(r, buf, 8) == 0, "read 8 of 10");
	TEST_ASSERT(stream_read(r, buf, 4) == -EPIPE,
		    "a read past the end in its middle is -EPIPE");
	stream_close(r);

	TEST_ASSERT(stream_open_mem_read(buf, 8, &r) == 0, "open");
	TEST_ASSERT(stream_read(r, buf, 8) == 0, "read all");
	TEST_ASSERT(stream_read(r, buf, 4) == -ENODATA,
		    "a read at the very end is -ENODATA");
	stream_close(r);
}

static void test_stream_error_is_sticky(void)
{
	uint8_t buf[16] = { 0 };
	struct stream *r;

	TEST_ASSERT(stream_open_mem_read(buf, sizeof(buf), &r) == 0, "open");
	TEST_ASSERT(stream_read(r, buf, 32) == -EPIPE, "short read");
	TEST_ASSERT(stream_error(r) == -EPIPE, "error %d", stream_error(r));
	TEST_ASSERT(stream_read(r, buf, 0) == -EPIPE, "later reads fail");
	TEST_ASSERT(stream_write(r, buf, 1) == -EPIPE, "and writes");
	TEST_ASSERT(stream_flush(r) == -EPIPE, "and flushes");
	TEST_ASSERT(stream_set_error(r, -EIO) == -EPIPE, "first error wins");
	stream_close(r);

	TEST_ASSERT(stream_open_mem_write(&r) == 0, "open");
	TEST_ASSERT(stream_read(r, buf, 1) == -EBADF, "reading a writer");
	TEST_ASSERT(stream_write(r, buf, 1) == -EBADF, "sticky");
	stream_close(r);
}

static void test_stream_file_round_trip(void)
{
	char path[] = "/tmp/vmrun-stream-XXXXXX";
	static uint8_t data[300000], back[300000];
	struct stream *w, *r;
	size_t off;
	int fd;

	fd = mkstemp(path);
	TEST_ASSERT(fd >= 0, "mkstemp: %s", strerror(errno));
	close(fd);
	fill_pattern(data, sizeof(data), 7);
	TEST_ASSERT(stream_open_file_write(path, &w) == 0, "open");
	/* Pieces of every size class: buffered, spanning, bypassing. */
	for (off = 0; off < sizeof(data);) {
		size_t n = MIN(sizeof(data) - off, off % 3 ? 17 : 70000);

		TEST_ASSERT(stream_write(w, data + off, n) == 0, "write");
		off += n;
	}
	TEST_ASSERT(stream_offset(w) == sizeof(data), "offset");
	TEST_ASSERT(stream_sync(w) == 0, "sync");
	stream_close(w);

	TEST_ASSERT(stream_open_file_read(path, &r) == 0, "open reader");
	TEST_ASSERT(stream_remaining(r) == sizeof(data), "remaining %llu",
		    (unsigned long long)stream_remaining(r));
	TEST_ASSERT(stream_read(r, back, 5) == 0, "read");
	TEST_ASSERT(stream_skip(r, 100) == 0, "skip");
	TEST_ASSERT(stream_read(r, back + 105, sizeof(back) - 105) == 0,
		    "read");
	TEST_ASSERT(!memcmp(back, data, 5) &&
			    !memcmp(back + 105, data + 105, sizeof(data) - 105),
		    "bytes differ");
	TEST_ASSERT(stream_hash(r) == XXH3_64bits(data, sizeof(data)),
		    "hash covers skipped bytes too");
	TEST_ASSERT(stream_read(r, back, 1) == -ENODATA, "end");
	stream_close(r);
	unlink(path);
	TEST_ASSERT(stream_open_file_read(path, &r) == -ENOENT, "missing");
}

struct pipe_writer {
	int fd;
	const uint8_t *data;
	size_t len;
	int ret;
};

static void *pipe_writer_fn(void *arg)
{
	struct pipe_writer *pw = arg;
	struct stream *w;
	size_t off;

	pw->ret = stream_open_fd(pw->fd, &w);
	if (pw->ret)
		return NULL;
	for (off = 0; off < pw->len && !pw->ret; off += 1000)
		pw->ret = stream_write(w, pw->data + off,
				       MIN((size_t)1000, pw->len - off));
	if (!pw->ret)
		pw->ret = stream_flush(w);
	stream_close(w);
	close(pw->fd);
	return NULL;
}

static void test_stream_fd_pipe(void)
{
	static uint8_t data[1 << 20], back[1 << 20];
	struct pipe_writer pw;
	struct stream *r, *w;
	pthread_t t;
	int p[2];

	fill_pattern(data, sizeof(data), 3);
	TEST_ASSERT(pipe(p) == 0, "pipe");

	/* A refill must return what is there, not wait for a full buffer. */
	TEST_ASSERT(stream_open_fd(p[0], &r) == 0, "open reader");
	TEST_ASSERT(stream_open_fd(p[1], &w) == 0, "open writer");
	TEST_ASSERT(stream_remaining(r) == UINT64_MAX, "a pipe has no size");
	TEST_ASSERT(stream_write(w, data, 100) == 0, "write");
	TEST_ASSERT(stream_flush(w) == 0, "flush");
	TEST_ASSERT(stream_read(r, back, 100) == 0, "read");
	TEST_ASSERT(!memcmp(back, data, 100), "bytes differ");
	stream_close(w);

	pw = (struct pipe_writer){ p[1], data, sizeof(data), 0 };
	TEST_ASSERT(pthread_create(&t, NULL, pipe_writer_fn, &pw) == 0,
		    "thread");
	TEST_ASSERT(stream_read(r, back, sizeof(back)) == 0, "read: %d",
		    stream_error(r));
	TEST_ASSERT(stream_read(r, back, 1) == -ENODATA, "end");
	pthread_join(t, NULL);
	TEST_ASSERT(pw.ret == 0, "writer: %d", pw.ret);
	TEST_ASSERT(!memcmp(back, data, sizeof(data)), "bytes differ");
	TEST_ASSERT(stream_bytes_read(r) == 100 + sizeof(data), "counter");
	stream_close(r);
	close(p[0]);
}

static void test_stream_fd_write_error_sticky(void)
{
	uint8_t buf[64] = { 0 };
	struct sigaction sa = { .sa_handler = SIG_IGN }, old;
	struct stream *w;
	int p[2];

	sigaction(SIGPIPE, &sa, &old);
	TEST_ASSERT(pipe(p) == 0, "pipe");
	close(p[0]);
	TEST_ASSERT(stream_open_fd(p[1], &w) == 0, "open");
	TEST_ASSERT(stream_write(w, buf, sizeof(buf)) == 0, "buffered");
	TEST_ASSERT(stream_flush(w) == -EPIPE, "flush: %d", stream_error(w));
	TEST_ASSERT(stream_write(w, buf, 1) == -EPIPE, "sticky");
	TEST_ASSERT(stream_sync(w) == -EPIPE, "sticky");
	stream_close(w);
	close(p[1]);
	sigaction(SIGPIPE, &old, NULL);
}

/* Seeks inside the read-ahead, far off, back, on memory; a pipe refuses. */
static void test_stream_seek(void)
{
	char path[] = "/tmp/vmrun-seek-XXXXXX";
	static uint8_t data[300000];
	static const uint64_t at[] = { 5, 70, 4000, 250000, 100, 299990, 0 };
	uint8_t back[10];
	struct stream *s;
	unsigned int i, k;
	int fd, p[2];

	fill_pattern(data, sizeof(data), 9);
	fd = mkstemp(path);
	TEST_ASSERT(fd >= 0 && write(fd, data, sizeof(data)) ==
				       (ssize_t)sizeof(data),
		    "temp file");
	close(fd);
	for (k = 0; k < 2; k++) {
		if (k)
			TEST_ASSERT(stream_open_mem_read(data, sizeof(data),
							 &s) == 0,
				    "open");
		else
			TEST_ASSERT(stream_open_file_read(path, &s) == 0,
				    "open");
		TEST_ASSERT(stream_read(s, back, 3) == 0, "read");
		for (i = 0; i < ARRAY_SIZE(at); i++) {
			TEST_ASSERT(stream_seek(s, at[i]) == 0, "seek %llu",
				    (unsigned long long)at[i]);
			TEST_ASSERT(stream_offset(s) == at[i], "offset");
			TEST_ASSERT(stream_remaining(s) == sizeof(data) - at[i],
				    "remaining");
			TEST_ASSERT(stream_read(s, back, sizeof(back)) == 0 &&
					    !memcmp(back, data + at[i],
						    sizeof(back)),
				    "%s: bytes at %llu", k ? "mem" : "file",
				    (unsigned long long)at[i]);
		}
		TEST_ASSERT(stream_seek(s, sizeof(data)) == 0, "seek to end");
		TEST_ASSERT(stream_read(s, back, 1) == -ENODATA, "read at end");
		stream_close(s);
	}
	unlink(path);
	TEST_ASSERT(pipe(p) == 0, "pipe");
	TEST_ASSERT(stream_open_fd(p[0], &s) == 0, "open");
	TEST_ASSERT(stream_seek(s, 10) == -ESPIPE, "seek on a pipe");
	stream_close(s);
	close(p[0]);
	close(p[1]);
}

const struct test_case stream_tests[] = {
	{ "seek", test_stream_seek },
	{ "mem_round_trip", test_stream_mem_round_trip },
	{ "truncated_read_errors", test_stream_truncated_read_errors },
	{ "error_is_sticky", test_stream_error_is_sticky },
	{ "file_round_trip", test_stream_file_round_trip },
	{ "fd_pipe", test_stream_fd_pipe },
	{ "fd_write_error_sticky", test_stream_fd_write_error_sticky },
	{ NULL, NULL },
};
