/* SPDX-License-Identifier: MIT */
/*
 * The destination of a live migration (migrate_recv(): the handshake,
 * the frames, the machine stream, the go-ahead) against arbitrary bytes
 * from its peer, over a socket pair. The first byte picks a mode: bit 0
 * clear, the rest is the stream as it is; set, a well-formed HELLO comes
 * first, and with bit 1 also the beginning of a real machine stream
 * (header, machine section for a 16 MiB machine of 1 to 4 vCPUs, its
 * memory layout), so that with a KVM the machine is built, checked and
 * reported ready before the rest is read; bit 2 sends a go-ahead last.
 * It must refuse with a reason, never crash or hang, and never hand back
 * a machine without a whole, valid stream and the go-ahead.
 */
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
 * the receiver starts, with the end of the stream after it. */
static void peer_send(int fd, const uint8_t *data, size_t size,
		      unsigned int mode)
{
	/* HELLO: the stream on this connection (no others), token 0. */
	uint8_t h[24] = "VMRUNMIG";
	bool hello = mode & 1, go = mode & 4;

	h[8] = MIGRATE_VERSION;
	if (hello && send(fd, h, sizeof(h), MSG_NOSIGNAL) != sizeof(h))
		abort();
	if (hello && (mode & 2))
		put_prefix(fd, (mode >> 3) % 4 + 1);
	if (size && send(fd, data, size, MSG_NOSIGNAL) != (ssize_t)size)
		abort();
	if (go && send(fd, "VMGO", 4, MSG_NOSIGNAL) != 4)
		abort();
	shutdown(fd, SHUT_WR);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vmsnap_restore_opts o = { .console = "none" };
	struct vmsnap_stats st;
	struct machine *m = NULL;
	unsigned int mode = size ? data[0] : 0;
	char err[512];
	int sv[2], ret;

	if (size > 65536)
		return 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	{
		int buf = 1 << 20;

		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	}
	if (!(mode & 1))
		mode = 0; /* the bytes alone */
	peer_send(sv[0], data + !!size, size - !!size, mode);
	err[0] = 0;
	ret = migrate_recv(sv[1], -1, NULL, "fuzz", &o, &m, &st, err,
			   sizeof(err));
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "%d: %s\n", ret, err);
	if (ret < 0 && !err[0])
		abort(); /* refused without a reason */
	if (ret == 0 && (!m || !(mode & 4)))
		abort(); /* a machine without a go-ahead */
	machine_destroy(m);
	close(sv[0]);
	close(sv[1]);
	return 0;
}
