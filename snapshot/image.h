/* SPDX-License-Identifier: MIT */
#ifndef VMM_SNAPSHOT_IMAGE_H
#define VMM_SNAPSHOT_IMAGE_H

/*
 * The one image/stream format shared by snapshot files, migration and
 * checkpoints (docs/snapshot-format.md): a header, then framed and
 * checksummed sections (state messages, memory layout, memory pages),
 * then an END section naming the content hash of everything before it.
 *
 * State messages and the memory layout are opaque here: a caller's type
 * id and bytes. Memory pages are 4 KiB pages of caller segments; zero
 * pages are elided, the rest go in batches, compressed as standard lz4 or
 * zstd frames or, in the aligned layout, stored uncompressed at
 * page-aligned file offsets so that a restore may mmap them.
 *
 * Writing:
 *   image_writer_create(stream, &hdr, &img);
 *   image_write_state() / image_write_layout() / image_write_pages() ...
 *   image_finish(img, &hash); image_destroy(img);
 * Reading (a restore, a migration receiver, or a check):
 *   image_reader_create(stream, flags, &img);
 *   image_read_header(img, &hdr);       (check hdr against this host)
 *   image_add_segment(img, id, nr_pages, mem) for each segment;
 *   image_read(img, &sink)   or   image_verify(img);
 *   image_destroy(img);
 *
 * Every failure leaves a one-line reason in image_error(). Bad input
 * gives -EBADMSG (corrupt or truncated bytes: a checksum, framing or
 * encoding does not hold) or -EINVAL (well-formed but wrong: a page out
 * of its segment, an unknown segment, a page given twice); a version
 * this code does not read gives -EPROTONOSUPPORT; a back-end failure
 * passes its -errno through. Errors are sticky: the image fails every
 * later call with the first one.
 *
 * An image is used by one thread at a time.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernel/util/compiler.h"

struct image;
struct stream;

enum image_codec {
	IMAGE_CODEC_NONE = 0,
	IMAGE_CODEC_LZ4 = 1,
	IMAGE_CODEC_ZSTD = 2,
};

/*
 * What the header carries. cpu_features and vcpu_model are the caller's
 * (the host's CPU features and the guest's vCPU model), opaque here.
 * @aligned asks for the uncompressed page-aligned layout and needs
 * IMAGE_CODEC_NONE. @base_hash names the base of an incremental image
 * (its image_finish() hash) when @has_base; @base_path, where the base
 * was written, is a hint for finding it (NULL: none).
 */
struct image_header {
	enum image_codec codec;
	bool aligned;
	const void *cpu_features;
	size_t cpu_features_len;
	const char *vcpu_model;
	uint64_t flags;
	bool has_base;
	uint64_t base_hash;
	const char *base_path;
	/* A page may be written more than once and the last copy wins (a
	 * live save writes pages again as the guest dirties them). */
	bool rewrites;
	/* Writer only, not stored: with codec workers (image_set_threads()),
	 * a batch goes raw instead of waiting in line while every worker is
	 * busy, so that a link faster than the workers is not held to
	 * their pace; while the link is the slower, the workers keep up and
	 * every batch is compressed. */
	bool adaptive;
};

/* image_sink.pages() gets this file offset for data it cannot mmap. */
#define IMAGE_NO_OFFSET UINT64_MAX

/*
 * One PAGES section as image_index() finds it: its segment, its pages as
 * @nr_runs (first, count) pairs, whether they are zero (no data), and the
 * file offset image_fetch() reads it from. The runs are valid during the
 * callback only.
 */
struct image_batch {
	uint32_t seg;
	bool zero;
	uint64_t nr_pages;
	const uint64_t *runs;
	size_t nr_runs;
	uint64_t offset;
};

/*
 * Where image_read() delivers sections; any callback may be NULL. Each
 * returns 0 or -errno, which stops the read and is returned.
 *
 * pages(): pages [first, first + nr) of segment @seg hold @data (nr * 4096
 * bytes), or are zero when @data is NULL. When the data lies uncompressed
 * in the stream, @file_off is its stream offset (page-aligned in the
 * aligned layout, for mmap), else IMAGE_NO_OFFSET. Runs arrive after the
 * whole section is verified, and after image_add_segment()'s memory has
 * been written.
 */
struct image_sink {
	void *opaque;
	int (*state)(void *opaque, uint32_t type, const void *data, size_t len);
	int (*layout)(void *opaque, uint32_t type, const void *data,
		      size_t len);
	int (*pages)(void *opaque, uint32_t seg, uint64_t first, uint64_t nr,
		     const void *data, uint64_t file_off);
	/* image_index() only: a PAGES section, its data not read. */
	int (*batch)(void *opaque, const struct image_batch *b);
};

/*
 * Writes the preamble and header to @s, which must be fresh (its hash is
 * reset: the content hash covers the image from its first byte). The
 * image does not own @s.
 */
int image_writer_create(struct stream *s, const struct image_header *hdr,
			struct image **out) __must_check;

/* Writes a state message: @type is the caller's id, @data opaque. */
int image_write_state(struct image *img, uint32_t type, const void *data,
		      size_t len) __must_check;

/* Writes the memory layout (opaque, the caller's @type). */
int image_write_layout(struct image *img, uint32_t type, const void *data,
		       size_t len) __must_check;

/*
 * Writes the pages of segment @seg (@nr_pages pages at @mem) whose bits
 * are set in @bitmap (bit n = page n, uint64_t words as in
 * kernel/util/bitmap.h), or every page when @bitmap is NULL. Zero pages
 * become runs with no data; the rest go in batches of up to 256 pages.
 * A page may be written more than once per image only for readers that
 * pass IMAGE_READ_ALLOW_REWRITE.
 */
int image_write_pages(struct image *img, uint32_t seg, const void *mem,
		      uint64_t nr_pages, const uint64_t *bitmap) __must_check;

/*
 * The same for pages [@first, @end) of the segment at @mem only (page n
 * is still at @mem + n * 4096 and bit n of @bitmap): a caller writing a
 * large segment in slices, to report progress between them.
 */
int image_write_page_range(struct image *img, uint32_t seg, const void *mem,
			   uint64_t first, uint64_t end,
			   const uint64_t *bitmap) __must_check;

/*
 * Records pages [@first, @end) of segment @seg as zero without reading
 * them: for ranges the caller knows hold no data (holes of a memfd).
 */
int image_write_zero_range(struct image *img, uint32_t seg, uint64_t first,
			   uint64_t end) __must_check;

/*
 * Gives the image @threads worker threads for its page batches (0: none,
 * the default: all on the caller's thread). A writer compresses batches
 * on them while the caller goes on scanning and writing out finished
 * batches, in order (a writer without a compressing codec keeps none: a
 * copy does not need them). A reader decompresses batches and copies
 * them into image_add_segment() memory on them while the caller reads
 * the next sections; a batch that rewrites pages still in flight waits
 * for them, every batch is in place before any other section is read
 * and before image_read_next() returns a failure, and sink->pages()
 * hears of batches in order, on the caller's thread. Call before any
 * page is written or read; -EINVAL after.
 */
int image_set_threads(struct image *img, unsigned int threads) __must_check;

/*
 * Writes out every batch the workers hold (a writer that has not
 * finished), so that the stream holds all the pages given so far; a
 * no-op without threads.
 */
int image_drain(struct image *img) __must_check;

/*
 * Writes the END section and flushes the stream (image_finish() does not
 * fsync: call stream_sync() for a file). Stores the image's content hash,
 * the name an incremental image gives its base, in @hash if not NULL.
 */
int image_finish(struct image *img, uint64_t *hash) __must_check;

/* Pages may arrive more than once (later migration rounds); last wins. */
#define IMAGE_READ_ALLOW_REWRITE 0x1u
/* image_add_segment() memory is known to be zero (fresh memfds): zero
 * pages are not written, so they are never faulted in. */
#define IMAGE_READ_MEM_ZEROED 0x2u

int image_reader_create(struct stream *s, unsigned int flags,
			struct image **out) __must_check;

/*
 * Reads and checks the preamble and header. The header's pointers stay
 * valid until image_destroy().
 */
int image_read_header(struct image *img,
		      const struct image_header **hdr) __must_check;

/*
 * Declares segment @seg of @nr_pages pages: pages outside it, or in an
 * undeclared segment, are refused. When @mem is not NULL image_read()
 * writes the pages there (zero pages included).
 */
int image_add_segment(struct image *img, uint32_t seg, uint64_t nr_pages,
		      void *mem) __must_check;

/*
 * For a chain read newest first: pages of segment @seg whose bit is set
 * in @done (the caller's bitmap, one bit per page) are left as they are,
 * and each page image_read() writes there, zero pages included, gets its
 * bit set. Call after image_add_segment() with memory.
 */
int image_segment_done(struct image *img, uint32_t seg,
		       uint64_t *done) __must_check;

/*
 * Reads one section (after the header) and delivers it to @sink (may be
 * NULL). Returns 0 for a section, 1 when it was END (the content hash
 * then matched), or a negative error.
 */
int image_read_next(struct image *img,
		    const struct image_sink *sink) __must_check;

/*
 * Reads every section through END, delivering them to @sink (may be
 * NULL). Reads the header first if image_read_header() was not called.
 * A file or memory image must end at END.
 */
int image_read(struct image *img, const struct image_sink *sink) __must_check;

/*
 * Checks the whole image (every checksum, every batch decompressed to its
 * exact size, pages against declared segments) and applies nothing, not
 * even to image_add_segment() memory.
 */
int image_verify(struct image *img) __must_check;

/*
 * Random access, for a lazy restore from a file (or memory) image:
 * image_index() reads every section through END as image_read() does,
 * except that of a PAGES section it reads only the descriptor (checked
 * as far as it can be without the data: lengths, encoding, runs against
 * the segments, no page twice) and gives it to sink->batch() with its
 * offset, seeking over the data; END's counts are compared, the content
 * hash is not (seeking leaves it uncomputed: check it with a full read,
 * image_verify()). Afterwards image_fetch() reads the PAGES section at
 * @offset, checks its payload hash and encoding, and gives its pages to
 * sink->pages() (and to image_add_segment() memory, if any), any number
 * of times, in any order. Both need a seekable stream.
 */
int image_index(struct image *img, const struct image_sink *sink) __must_check;
int image_fetch(struct image *img, uint64_t offset,
		const struct image_sink *sink) __must_check;

/*
 * The content hash an image file's END section records, read from the
 * file's tail without reading the rest: a quick check that @fd is the
 * base an incremental image names (a full read still checks every byte).
 * -EBADMSG if the file does not end in a valid END section.
 */
int image_file_content_hash(int fd, uint64_t *hash) __must_check;

/* The content hash: after image_finish(), or after a read reached END. */
uint64_t image_content_hash(const struct image *img);

/* A writer's data batches so far, and of them those written raw (they
 * did not shrink, or went raw as image_header.adaptive allows). */
void image_batch_counts(const struct image *img, uint64_t *batches,
			uint64_t *raw);

/* Pages written or read so far, and of them zero pages. */
void image_counts(const struct image *img, uint64_t *pages,
		  uint64_t *zero_pages);

/* The reason for the first failure, or "" if none. */
const char *image_error(const struct image *img);

void image_destroy(struct image *img);

const char *image_codec_name(enum image_codec codec);
/* The codec named "lz4", "zstd" or "none" into *@out; else -EINVAL. */
int image_codec_parse(const char *name, enum image_codec *out) __must_check;

/* True if the 4 KiB page at @page is all zero; stops at the first non-zero. */
bool image_page_is_zero(const void *page);

#endif /* VMM_SNAPSHOT_IMAGE_H */
