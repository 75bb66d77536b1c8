/* SPDX-License-Identifier: MIT */
/*
 * The destination of a live migration (migrate_recv(): the handshake,
 * the frames, the machine stream, the go-ahead) against arbitrary bytes
 * from its peer, over a socket pair. The first byte picks a mode: bit 0
 * clear, the rest is the stream as it is; set, a well-formed HELLO comes
 * first, and with bit 1 also the beginning of a real machine stream
 * (header, machine section for a 16 MiB machine of 1 to 4 vCPUs, its
 * memory layout), so that with a KVM the machine is built, checked and
 * reported ready before the rest is read; bit 2 sends a go-ahead.
 * It must refuse with a reason, never crash or hang, and never hand back
 * a machine without a whole, valid stream and the go-ahead.
 *
 * The go-ahead comes as a real source sends it: only after the receiver
 * has said "loaded". Written up front with the rest, the receiver's
 * read-ahead would take it as part of the stream. So every input first
 * runs with the stream and then the end of the connection, as fast as
 * anything can fail; an input that gets as far as "loaded" (the receiver
 * then finds the end instead of a go-ahead) runs again with bit 2, its
 * bytes all written first (so the receiver never waits on them) and the
 * go-ahead sent by a thread when "loaded" arrives: the success path.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kernel/machine.h"
#include "machine.pb-c.h"
#include "migrate/migrate.h"
#include "snapshot/image.h"
#include "snapshot/stream.h"
#include "snapshot/vmsnap.h"
#include "tests/fuzz/fuzz.h"

#define PREFIX_MEM (16u << 20)

/* The beginning of a live machine stream: header, machine, layout. */
static void put_prefix(int fd, unsigned int cpus)
{
	struct image_header hdr = { .codec = IMAGE_CODEC_LZ4,
				    .rewrites = true,
				    .flags = VMSNAP_FLAG_LIVE };
	Vmrun__MachineConfig mc;
	Vmrun__MemSegment seg, *segp = &seg;
	Vmrun__MemMap map, *mapp = &map;
	Vmrun__MemLayout l;
	uint8_t buf[512];
	const void *data;
	struct stream *s;
	struct image *img;
	size_t n;
	int ret;

	if (stream_open_mem_write(&s) || image_writer_create(s, &hdr, &img))
		abort();
	vmrun__machine_config__init(&mc);
	mc.mem_bytes = PREFIX_MEM;
	mc.nr_vcpus = cpus;
	n = vmrun__machine_config__pack(&mc, buf);
	ret = image_write_state(img, VMSNAP_STATE_MACHINE, buf, n);
	vmrun__mem_segment__init(&seg);
	seg.size = PREFIX_MEM;
	vmrun__mem_map__init(&map);
	map.size = PREFIX_MEM;
	vmrun__mem_layout__init(&l);
	l.n_segments = 1;
	l.segments = &segp;
	l.n_maps = 1;
	l.maps = &mapp;
	n = vmrun__mem_layout__pack(&l, buf);
	ret = ret ?: image_write_layout(img, VMSNAP_LAYOUT_MEM, buf, n);
	if (ret)
		abort();
	data = stream_mem_data(s, &n);
	if (send(fd, data, n, MSG_NOSIGNAL) != (ssize_t)n)
		abort();
	image_destroy(img);
	stream_close(s);
}

/* Everything the peer sends fits in the socket's buffer: written before
 * the receiver starts. */
static void peer_send(int fd, const uint8_t *data, size_t size,
		      unsigned int mode)
{
	/* HELLO: the stream on this connection (no others), token 0. */
	uint8_t h[24] = "VMRUNMIG";
	bool hello = mode & 1;

	h[8] = MIGRATE_VERSION;
	if (hello && send(fd, h, sizeof(h), MSG_NOSIGNAL) != sizeof(h))
		abort();
	if (hello && (mode & 2))
		put_prefix(fd, (mode >> 3) % 4 + 1);
	if (size && send(fd, data, size, MSG_NOSIGNAL) != (ssize_t)size)
		abort();
}

/* The source's side after the stream: the go-ahead once "loaded" came. */
struct source {
	int fd;
	bool went;
};

static void *answer(void *arg)
{
	struct source *src = arg;
	char buf[4096];
	size_t have = 0;
	ssize_t n;

	while ((n = recv(src->fd, buf + have, sizeof(buf) - 1 - have, 0)) > 0) {
		have += (size_t)n;
		buf[have] = 0;
		if (memmem(buf, have, "loaded", 6)) {
			src->went = send(src->fd, "VMGO", 4, MSG_NOSIGNAL) == 4;
			break;
		}
		/* Keep the tail, where "loaded" may have begun. */
		if (have > sizeof(buf) / 2) {
			memmove(buf, buf + have - 8, 8);
			have = 8;
		}
	}
	shutdown(src->fd, SHUT_WR);
	return NULL;
}

/* One run of the receiver; with @go, the go-ahead after "loaded". */
static int run(const uint8_t *data, size_t size, unsigned int mode, bool go,
	       char *err, size_t errlen)
{
	struct vmsnap_restore_opts o = { .console = "none" };
	struct source src = { 0 };
	struct vmsnap_stats st;
	struct machine *m = NULL;
	pthread_t t;
	int sv[2], ret, buf = 1 << 20;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	peer_send(sv[0], data, size, mode);
	src.fd = sv[0];
	if (!go)
		shutdown(sv[0], SHUT_WR);
	else if (pthread_create(&t, NULL, answer, &src))
		abort();
	err[0] = 0;
	ret = migrate_recv(sv[1], -1, NULL, "fuzz", &o, &m, &st, err, errlen);
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "%s%d: %s\n", go ? "go: " : "", ret, err);
	if (ret < 0 && !err[0])
		abort(); /* refused without a reason */
	if (ret == 0 && !m)
		abort();
	/* The thread's recv() ends when the receiver's end closes. */
	close(sv[1]);
	if (go)
		pthread_join(t, NULL);
	if (ret == 0 && !src.went)
		abort(); /* a machine without a go-ahead */
	machine_destroy(m);
	close(sv[0]);
	return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned int mode = size ? data[0] : 0;
	char err[512];
	int ret;

	if (size > 65536)
		return 0;
	if (!(mode & 1))
		mode = 0; /* the bytes alone */
	ret = run(data + !!size, size - !!size, mode, false, err, sizeof(err));
	/* Loaded, then the end of the connection where the go-ahead was
	 * due: the same stream again, with the go-ahead. */
	if (ret == -ECONNRESET && (mode & 4) &&
	    strstr(err, "did not confirm the switch"))
		run(data + !!size, size - !!size, mode, true, err, sizeof(err));
	return 0;
}
