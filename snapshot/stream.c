/* SPDX-License-Identifier: MIT */
#include "snapshot/stream.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "kernel/util/compiler.h"

/* Small reads and writes on fd back ends go through a buffer this big. */
#define STREAM_BUF_SIZE (64 * 1024)
/* The first refill after a seek reads this much: random access reads a
 * frame and a descriptor there, not a whole buffer. */
#define STREAM_SEEK_READ 4096

/*
 * Back-end operations. read_some() returns what one read(2) would: the
 * number of bytes (at least 1), 0 at the end, or -errno; the generic layer
 * makes reads whole, so a pipe refill never waits for more than is there.
 * write_full() writes everything or fails. sync() makes written bytes
 * durable (it may be NULL). close() releases what the back end owns.
 */
struct stream_ops {
	long (*read_some)(struct stream *s, void *buf, size_t len);
	int (*write_full)(struct stream *s, const void *buf, size_t len);
	int (*sync)(struct stream *s);
	void (*close)(struct stream *s);
};

struct stream {
	const struct stream_ops *ops;
	int err;
	bool writing;
	uint64_t nread, nwritten;
	uint64_t base;	/* back-end offset at open */
	uint64_t limit; /* back-end size for readers, or UINT64_MAX */
	XXH3_state_t *hash;

	/* The fd back ends' buffer: pending writes, or read-ahead. */
	uint8_t *buf;
	size_t buf_pos, buf_len;
	bool sought; /* the next refill is a small one (random access) */

	int fd;
	bool own_fd;
	bool sock; /* writes with send(MSG_NOSIGNAL) */

	/* A caller's back end. */
	const struct stream_backend *be;
	void *be_opaque;

	/* Memory back ends. */
	const uint8_t *mem_in;
	uint8_t *mem_out;
	size_t mem_len, mem_cap, mem_pos;
};

static long fd_read_some(struct stream *s, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = read(s->fd, buf, len);

		if (n >= 0)
			return n;
		/* A socket's SO_RCVTIMEO ran out: nothing came. */
		if (errno == EAGAIN)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

static int fd_write_full(struct stream *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = s->sock ? send(s->fd, p, len, MSG_NOSIGNAL) :
				      write(s->fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			/* A socket's SO_SNDTIMEO ran out: the peer took
			 * nothing. */
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fd_sync(struct stream *s)
{
	/* A pipe or socket has nothing to make durable. */
	if (fsync(s->fd) < 0 && errno != EINVAL && errno != EROFS)
		return -errno;
	return 0;
}

static void fd_close(struct stream *s)
{
	if (s->own_fd)
		close(s->fd);
}

static const struct stream_ops fd_ops = {
	.read_some = fd_read_some,
	.write_full = fd_write_full,
	.sync = fd_sync,
	.close = fd_close,
};

static long mem_read_some(struct stream *s, void *buf, size_t len)
{
	size_t n = MIN(len, s->mem_len - s->mem_pos);

	memcpy(buf, s->mem_in + s->mem_pos, n);
	s->mem_pos += n;
	return (long)n;
}

static int mem_write_full(struct stream *s, const void *buf, size_t len)
{
	if (len > s->mem_cap - s->mem_len) {
		size_t cap = s->mem_cap ? s->mem_cap : 4096;
		uint8_t *p;

		while (cap - s->mem_len < len) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		p = realloc(s->mem_out, cap);
		if (!p)
			return -ENOMEM;
		s->mem_out = p;
		s->mem_cap = cap;
	}
	memcpy(s->mem_out + s->mem_len, buf, len);
	s->mem_len += len;
	return 0;
}

static void mem_close(struct stream *s)
{
	free(s->mem_out);
}

static const struct stream_ops mem_read_ops = {
	.read_some = mem_read_some,
	.close = mem_close,
};

static const struct stream_ops mem_write_ops = {
	.write_full = mem_write_full,
	.close = mem_close,
};

static long be_read_some(struct stream *s, void *buf, size_t len)
{
	return s->be->read_some(s->be_opaque, buf, len);
}

static int be_write_full(struct stream *s, const void *buf, size_t len)
{
	return s->be->write_full(s->be_opaque, buf, len);
}

static void be_close(struct stream *s)
{
	if (s->be->close)
		s->be->close(s->be_opaque);
}

static const struct stream_ops be_ops = {
	.read_some = be_read_some,
	.write_full = be_write_full,
	.close = be_close,
};

static int stream_alloc(const struct stream_ops *ops, bool writing,
			bool buffered, struct stream **out)
{
	struct stream *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->ops = ops;
	s->writing = writing;
	s->limit = UINT64_MAX;
	s->fd = -1;
	s->hash = XXH3_createState();
	if (!s->hash)
		goto err_free;
	XXH3_64bits_reset(s->hash);
	if (buffered) {
		s->buf = malloc(STREAM_BUF_SIZE);
		if (!s->buf)
			goto err_free_hash;
	}
	*out = s;
	return 0;

err_free_hash:
	XXH3_freeState(s->hash);
err_free:
	free(s);
	return -ENOMEM;
}

/* Records where a seekable fd starts and, for reading, how big it is. */
static void stream_probe_fd(struct stream *s)
{
	struct stat st;
	off_t off = lseek(s->fd, 0, SEEK_CUR);

	if (off < 0)
		return;
	s->base = (uint64_t)off;
	if (!s->writing && fstat(s->fd, &st) == 0 && S_ISREG(st.st_mode))
		s->limit = (uint64_t)st.st_size;
}

static int stream_open_path(const char *path, int flags, bool writing,
			    struct stream **out)
{
	struct stream *s;
	int fd, ret;

	fd = open(path, flags | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ret = stream_alloc(&fd_ops, writing, true, &s);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	s->fd = fd;
	s->own_fd = true;
	stream_probe_fd(s);
	*out = s;
	return 0;
}

int stream_open_file_read(const char *path, struct stream **out)
{
	return stream_open_path(path, O_RDONLY, false, out);
}

int stream_open_file_write(const char *path, struct stream **out)
{
	return stream_open_path(path, O_WRONLY | O_CREAT | O_TRUNC, true, out);
}

int stream_open_fd_dir(int fd, bool writing, struct stream **out)
{
	struct stream *s;
	struct stat st;
	int ret;

	if (fstat(fd, &st) < 0)
		return -errno;
	ret = stream_alloc(&fd_ops, writing, true, &s);
	if (ret < 0)
		return ret;
	s->fd = fd;
	s->sock = S_ISSOCK(st.st_mode);
	stream_probe_fd(s);
	*out = s;
	return 0;
}

int stream_open_fd(int fd, struct stream **out)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0)
		return -errno;
	return stream_open_fd_dir(fd, (flags & O_ACCMODE) == O_WRONLY, out);
}

int stream_open_mem_read(const void *buf, size_t len, struct stream **out)
{
	int ret = stream_alloc(&mem_read_ops, false, false, out);

	if (ret < 0)
		return ret;
	(*out)->mem_in = buf;
	(*out)->mem_len = len;
	(*out)->limit = len;
	return 0;
}

int stream_open_backend(const struct stream_backend *be, void *opaque,
			bool writing, struct stream **out)
{
	int ret;

	if (writing ? !be->write_full : !be->read_some)
		return -EINVAL;
	ret = stream_alloc(&be_ops, writing, false, out);
	if (ret < 0)
		return ret;
	(*out)->be = be;
	(*out)->be_opaque = opaque;
	return 0;
}

int stream_open_mem_write(struct stream **out)
{
	return stream_alloc(&mem_write_ops, true, false, out);
}

void stream_close(struct stream *s)
{
	if (!s)
		return;
	s->ops->close(s);
	XXH3_freeState(s->hash);
	free(s->buf);
	free(s);
}

int stream_error(const struct stream *s)
{
	return s->err;
}

int stream_set_error(struct stream *s, int err)
{
	if (!s->err)
		s->err = err;
	return s->err;
}

/* Fills the read-ahead buffer with what one back-end read gives. */
static int stream_refill(struct stream *s)
{
	long n = s->ops->read_some(
		s, s->buf, s->sought ? STREAM_SEEK_READ : STREAM_BUF_SIZE);

	s->sought = false;

	if (n < 0)
		return (int)n;
	s->buf_pos = 0;
	s->buf_len = (size_t)n;
	return 0;
}

int stream_read(struct stream *s, void *buf, size_t len)
{
	uint8_t *p = buf;
	size_t done = 0;
	int ret = 0;

	if (s->err)
		return s->err;
	/* One direction per stream: the buffer serves one or the other. */
	if (!s->ops->read_some || s->writing)
		return stream_set_error(s, -EBADF);
	while (done < len) {
		size_t want = len - done, n;

		/* Unbuffered, or a large read with the buffer empty: straight
		 * from the back end. */
		if (!s->buf ||
		    (s->buf_pos == s->buf_len && want >= STREAM_BUF_SIZE)) {
			long r = s->ops->read_some(s, p + done, want);

			if (r < 0) {
				ret = (int)r;
				break;
			}
			if (r == 0)
				break;
			done += (size_t)r;
			continue;
		}
		if (s->buf_pos == s->buf_len) {
			ret = stream_refill(s);
			if (ret < 0 || s->buf_len == 0)
				break;
		}
		n = MIN(want, s->buf_len - s->buf_pos);
		memcpy(p + done, s->buf + s->buf_pos, n);
		s->buf_pos += n;
		done += n;
	}
	XXH3_64bits_update(s->hash, p, done);
	s->nread += done;
	if (ret == 0 && done < len)
		ret = done ? -EPIPE : -ENODATA;
	if (ret < 0)
		return stream_set_error(s, ret);
	return 0;
}

int stream_skip(struct stream *s, uint64_t len)
{
	uint8_t tmp[4096];

	while (len) {
		size_t n = (size_t)MIN(len, (uint64_t)sizeof(tmp));
		int ret = stream_read(s, tmp, n);

		if (ret < 0)
			return ret;
		len -= n;
	}
	return 0;
}

int stream_seek(struct stream *s, uint64_t off)
{
	uint64_t at = stream_offset(s);

	if (s->err)
		return s->err;
	if (s->writing || off < s->base)
		return -EINVAL;
	if (s->ops == &mem_read_ops) {
		if (off > s->mem_len)
			return -EINVAL;
		s->mem_pos = (size_t)off;
	} else if (s->buf && off >= at - s->buf_pos &&
		   off <= at + (s->buf_len - s->buf_pos)) {
		/* Inside the read-ahead: no system call. */
		s->buf_pos = (size_t)(off - (at - s->buf_pos));
	} else {
		if (lseek(s->fd, (off_t)off, SEEK_SET) < 0)
			return -errno;
		s->buf_pos = s->buf_len = 0;
		s->sought = true;
	}
	s->nread = off - s->base;
	return 0;
}

static int stream_drain(struct stream *s)
{
	int ret;

	if (!s->buf || !s->buf_len)
		return 0;
	ret = s->ops->write_full(s, s->buf, s->buf_len);
	s->buf_len = 0;
	return ret;
}

int stream_write(struct stream *s, const void *buf, size_t len)
{
	int ret;

	if (s->err)
		return s->err;
	if (!s->ops->write_full || s->nread)
		return stream_set_error(s, -EBADF);
	s->writing = true;
	XXH3_64bits_update(s->hash, buf, len);
	s->nwritten += len;
	if (s->buf && len < STREAM_BUF_SIZE - s->buf_len) {
		memcpy(s->buf + s->buf_len, buf, len);
		s->buf_len += len;
		return 0;
	}
	ret = stream_drain(s);
	if (ret == 0 && s->buf && len < STREAM_BUF_SIZE) {
		memcpy(s->buf, buf, len);
		s->buf_len = len;
	} else if (ret == 0) {
		ret = s->ops->write_full(s, buf, len);
	}
	if (ret < 0)
		return stream_set_error(s, ret);
	return 0;
}

int stream_write_zeroes(struct stream *s, size_t len)
{
	static const uint8_t zero[4096];

	while (len) {
		size_t n = MIN(len, sizeof(zero));
		int ret = stream_write(s, zero, n);

		if (ret < 0)
			return ret;
		len -= n;
	}
	return 0;
}

int stream_flush(struct stream *s)
{
	int ret;

	if (s->err)
		return s->err;
	if (!s->writing)
		return 0;
	ret = stream_drain(s);
	if (ret == 0 && s->ops == &be_ops && s->be->flush)
		ret = s->be->flush(s->be_opaque);
	if (ret < 0)
		return stream_set_error(s, ret);
	return 0;
}

int stream_sync(struct stream *s)
{
	int ret = stream_flush(s);

	if (ret < 0 || !s->ops->sync || !s->writing)
		return ret;
	ret = s->ops->sync(s);
	if (ret < 0)
		return stream_set_error(s, ret);
	return 0;
}

uint64_t stream_bytes_read(const struct stream *s)
{
	return s->nread;
}

uint64_t stream_bytes_written(const struct stream *s)
{
	return s->nwritten;
}

uint64_t stream_offset(const struct stream *s)
{
	return s->base + (s->writing ? s->nwritten : s->nread);
}

uint64_t stream_remaining(const struct stream *s)
{
	uint64_t off = stream_offset(s);

	if (s->writing || s->limit == UINT64_MAX)
		return UINT64_MAX;
	return s->limit > off ? s->limit - off : 0;
}

bool stream_read_would_block(const struct stream *s, size_t len)
{
	struct pollfd p = { .fd = s->fd, .events = POLLIN };

	if (s->ops == &be_ops)
		return !s->writing && s->be->would_block &&
		       s->be->would_block(s->be_opaque);
	if (s->writing || s->ops != &fd_ops || s->limit != UINT64_MAX ||
	    (s->buf && s->buf_len - s->buf_pos >= len))
		return false;
	return poll(&p, 1, 0) == 0;
}

uint64_t stream_hash(const struct stream *s)
{
	return XXH3_64bits_digest(s->hash);
}

void stream_hash_reset(struct stream *s)
{
	XXH3_64bits_reset(s->hash);
}

const void *stream_mem_data(const struct stream *s, size_t *len)
{
	if (s->ops != &mem_write_ops)
		return NULL;
	*len = s->mem_len;
	return s->mem_out;
}
