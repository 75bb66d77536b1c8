/* SPDX-License-Identifier: MIT */
/*
 * Writing throughput of the image format: a buffer (256 MiB by default,
 * --mib N) of zero, random or compressible text pages written into a
 * stream per codec and layout, and read back (verify and restore
 * into memory), with --threads N codec workers on each side (default
 * none) and with --adaptive batches raw while every worker is busy.
 * Prints MiB/s of guest memory, the image size and the raw batches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "snapshot/image.h"
#include "snapshot/stream.h"
#include "tests/harness/test_util.h"
#include "tests/unit/image_gen.h"

static double mib_per_s(uint64_t bytes, unsigned long long ns)
{
	return (double)bytes / (1 << 20) / ((double)ns / 1e9);
}

static int null_fd;
static unsigned int threads;
static bool adaptive;

static void run(const uint8_t *mem, uint64_t nr_pages, uint8_t *back,
		enum image_codec codec, bool aligned, const char *kind)
{
	struct image_header hdr = { .codec = codec,
				    .aligned = aligned,
				    .adaptive = adaptive };
	uint64_t batches, raw, size;
	unsigned long long t0, t1, t2;
	struct stream *s, *r;
	struct image *img;
	const void *data;
	size_t len;

	/*
	 * Timed: the write into /dev/null, which costs what the format costs
	 * (zero checks, compression, hashing, copies) and not the page faults
	 * of a growing buffer, which are slow on this host; its size and raw
	 * batches are printed. Untimed: the image into memory (not
	 * adaptive), for the timed read.
	 */
	if (stream_open_fd(null_fd, &s) || image_writer_create(s, &hdr, &img) ||
	    image_set_threads(img, threads))
		exit(1);
	t0 = now_ns();
	if (image_write_pages(img, 1, mem, nr_pages, NULL) ||
	    image_finish(img, NULL))
		exit(1);
	t1 = now_ns();
	image_batch_counts(img, &batches, &raw);
	size = stream_bytes_written(s);
	image_destroy(img);
	stream_close(s);
	/* Read back: the image as the caller's thread writes it. */
	hdr.adaptive = false;
	if (stream_open_mem_write(&s) || image_writer_create(s, &hdr, &img) ||
	    image_write_pages(img, 1, mem, nr_pages, NULL) ||
	    image_finish(img, NULL))
		exit(1);
	image_destroy(img);
	data = stream_mem_data(s, &len);
	if (stream_open_mem_read(data, len, &r) ||
	    image_reader_create(r, 0, &img) ||
	    image_set_threads(img, threads) ||
	    image_add_segment(img, 1, nr_pages, back))
		exit(1);
	t2 = now_ns();
	if (image_read(img, NULL)) {
		fprintf(stderr, "read: %s\n", image_error(img));
		exit(1);
	}
	t2 = now_ns() - t2;
	if (memcmp(mem, back, nr_pages * 4096))
		exit(1);
	printf("%-7s %-12s write %8.0f MiB/s  read %8.0f MiB/s  image %6.1f%%"
	       "  raw batches %3.0f%%\n",
	       kind, aligned ? "none+aligned" : image_codec_name(codec),
	       mib_per_s(nr_pages * 4096, t1 - t0),
	       mib_per_s(nr_pages * 4096, t2),
	       100.0 * (double)size / (double)(nr_pages * 4096),
	       batches ? 100.0 * (double)raw / (double)batches : 0);
	image_destroy(img);
	stream_close(r);
	stream_close(s);
}

int main(int argc, char **argv)
{
	static const char *const kinds[] = { "zero", "random", "text" };
	uint64_t mib = 256, nr_pages;
	uint8_t *mem, *back;
	int k;

	for (k = 1; k < argc; k += 2) {
		if (!strcmp(argv[k], "--mib") && k + 1 < argc) {
			mib = strtoull(argv[k + 1], NULL, 10);
		} else if (!strcmp(argv[k], "--adaptive")) {
			adaptive = true;
			k--;
		} else if (!strcmp(argv[k], "--threads") && k + 1 < argc) {
			threads = (unsigned int)strtoul(argv[k + 1], NULL, 10);
		} else {
			fprintf(stderr, "usage: image_perf [--mib N] "
					"[--threads N] [--adaptive]\n");
			return 2;
		}
	}
	nr_pages = mib << 8;
	null_fd = open("/dev/null", O_WRONLY);
	mem = malloc(nr_pages * 4096);
	back = malloc(nr_pages * 4096);
	if (!mem || !back)
		return 1;
	memset(back, 1, nr_pages * 4096); /* fault it in */
	for (k = 0; k < 3; k++) {
		gen_pages(mem, nr_pages, (enum gen_kind)(GEN_ZERO + k), 1);
		run(mem, nr_pages, back, IMAGE_CODEC_NONE, false, kinds[k]);
		run(mem, nr_pages, back, IMAGE_CODEC_NONE, true, kinds[k]);
		run(mem, nr_pages, back, IMAGE_CODEC_LZ4, false, kinds[k]);
		run(mem, nr_pages, back, IMAGE_CODEC_ZSTD, false, kinds[k]);
	}
	free(mem);
	free(back);
	return 0;
}
