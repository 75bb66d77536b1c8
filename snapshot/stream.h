/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_STREAM_H
#define VMM_SNAPSHOT_STREAM_H

/*
 * A byte stream with back ends (after Redis's rio.h): a file by path, a
 * plain fd (pipe or socket, for migration) and a memory buffer (growable
 * for writing, fixed for reading). Snapshot files, migration and
 * checkpoints all read and write through it.
 *
 * Every stream keeps:
 *  - a running XXH3-64 checksum over every byte read or written since
 *    open or the last stream_hash_reset() (a stream is used in one
 *    direction);
 *  - byte counters;
 *  - a sticky error: the first -errno wins and every later operation
 *    returns it at once without touching the back end.
 *
 * Reads are all-or-nothing. A read that meets the end of the stream fails
 * with one of two distinct errors:
 *   -ENODATA  the stream ended exactly where this read began (a clean
 *             end between records);
 *   -EPIPE    the stream ended partway through this read (truncated).
 * Either is sticky, like any other error.
 *
 * A stream is used by one thread at a time.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct stream;

/* Opens @path for reading (O_RDONLY). */
int stream_open_file_read(const char *path, struct stream **out) __must_check;

/*
 * Creates or truncates @path for writing (mode 0600). stream_sync()
 * flushes and fsyncs it; atomic replacement (temporary file and rename)
 * is the caller's business.
 */
int stream_open_file_write(const char *path, struct stream **out) __must_check;

/*
 * Wraps an open fd (pipe, socket or file), which the stream does not own
 * and never closes. Offsets reported by stream_offset() start at the fd's
 * current file position when it is seekable, else at 0.
 */
int stream_open_fd(int fd, struct stream **out) __must_check;

/*
 * The same for a descriptor open both ways (a socket): @writing says
 * which way the stream goes. Writes to a socket never raise SIGPIPE; a
 * closed peer is -EPIPE.
 */
int stream_open_fd_dir(int fd, bool writing, struct stream **out) __must_check;

/*
 * A back end of the caller's (a migration's several connections): the
 * stream keeps its hash, counters and sticky error and calls these,
 * unbuffered (the back end buffers as it likes).
 *  read_some()   what one read(2) would give: bytes (at least 1), 0 at
 *                the end, or -errno (reader);
 *  write_full()  takes all of @len bytes or fails (writer);
 *  flush()       after stream_flush(): every byte taken is out (may be
 *                NULL);
 *  would_block() a read now would wait for the peer (may be NULL: never);
 *  close()       at stream_close() (may be NULL).
 */
struct stream_backend {
	long (*read_some)(void *opaque, void *buf, size_t len);
	int (*write_full)(void *opaque, const void *buf, size_t len);
	int (*flush)(void *opaque);
	bool (*would_block)(void *opaque);
	void (*close)(void *opaque);
};

int stream_open_backend(const struct stream_backend *be, void *opaque,
			bool writing, struct stream **out) __must_check;

/* Reads from @len bytes at @buf, which must outlive the stream. */
int stream_open_mem_read(const void *buf, size_t len,
			 struct stream **out) __must_check;

/* Writes into a growable buffer; see stream_mem_data(). */
int stream_open_mem_write(struct stream **out) __must_check;

/*
 * Frees the stream and closes what it opened. It does not flush: call
 * stream_flush() or stream_sync() first and check the result.
 */
void stream_close(struct stream *s);

/* Reads exactly @len bytes or fails (see the end-of-stream errors above). */
int stream_read(struct stream *s, void *buf, size_t len) __must_check;

/* Writes all of @len bytes or fails. */
int stream_write(struct stream *s, const void *buf, size_t len) __must_check;

/* Writes @len zero bytes. */
int stream_write_zeroes(struct stream *s, size_t len) __must_check;

/* Reads and discards @len bytes (still hashed). */
int stream_skip(struct stream *s, uint64_t len) __must_check;

/*
 * For a reading stream over a regular file, a seekable fd or memory:
 * makes @off (a stream_offset() value) the next byte read. The running
 * hash then covers bytes from both sides of the seek and means nothing;
 * random access (lazy restore) checks each section's own checksum.
 * -EINVAL for an offset before the start or past a memory buffer,
 * -ESPIPE for a pipe or socket. The sticky error is kept.
 */
int stream_seek(struct stream *s, uint64_t off) __must_check;

/* Pushes buffered bytes to the back end. */
int stream_flush(struct stream *s) __must_check;

/* Flushes, then makes the bytes durable (fsync for files). */
int stream_sync(struct stream *s) __must_check;

/* The sticky error, 0 if none. */
int stream_error(const struct stream *s);

/*
 * Sets the sticky error to @err (a -errno) unless one is already set, and
 * returns the sticky error: callers that find the data itself bad use it
 * so that a stream is not read on past a corrupt record.
 */
int stream_set_error(struct stream *s, int err);

uint64_t stream_bytes_read(const struct stream *s);
uint64_t stream_bytes_written(const struct stream *s);

/*
 * Offset of the next byte in the back end: for files and seekable fds the
 * file offset (what a later mmap of the file uses), else the count of
 * bytes so far.
 */
uint64_t stream_offset(const struct stream *s);

/*
 * Bytes left to read when the back end knows (memory, regular files), or
 * UINT64_MAX when it does not (pipes, sockets, write streams).
 */
uint64_t stream_remaining(const struct stream *s);

/*
 * True if reading @len more bytes would wait for a peer: a pipe's or
 * socket's reader whose buffer holds less than @len and whose fd has
 * nothing to read now. Files and memory never wait.
 */
bool stream_read_would_block(const struct stream *s, size_t len);

/* The XXH3-64 of every byte since open or the last reset. */
uint64_t stream_hash(const struct stream *s);
void stream_hash_reset(struct stream *s);

/*
 * For a memory write stream: the bytes written so far, owned by the
 * stream. Returns NULL for other back ends.
 */
const void *stream_mem_data(const struct stream *s, size_t *len);

#endif /* VMM_SNAPSHOT_STREAM_H */
