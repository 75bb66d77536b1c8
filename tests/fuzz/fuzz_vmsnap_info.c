/* SPDX-License-Identifier: MIT */
/*
 * The machine-image reader (vmsnap_info(): vmrun image info/verify, and
 * the checks a restore makes before building anything) against arbitrary
 * files. The first byte picks a mode: even, the rest is the file as it
 * is; odd, the rest shapes a small real machine image (vCPUs, pages, an
 * incremental header naming a base) and then mutates it (offset, xor
 * pairs). It must refuse with a reason or accept an image whose counts
 * are in range; a mutated image that changed a byte must be refused.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "machine.pb-c.h"
#include "snapshot/stream.h"
#include "snapshot/vmsnap.h"
#include "tests/fuzz/fuzz.h"
#include "vm_state.pb-c.h"

#define FUZZ_PAGES 32u

/* Runs vmsnap_info() on @data as a file; returns its result. */
static int fuzz_info(const uint8_t *data, size_t size)
{
	static struct vmsnap_info inf;
	char path[64], err[512];
	int fd = memfd_create("fuzz-image", MFD_CLOEXEC), ret;

	if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size))
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	err[0] = 0;
	ret = vmsnap_info(path, &inf, err, sizeof(err));
	close(fd);
	if (ret < 0 && !err[0])
		abort(); /* refused without a reason */
	if (!ret && (!inf.nr_vcpus || inf.nr_vcpus > 64 || inf.nr_devs > 32 ||
		     inf.pages < inf.zero_pages))
		abort(); /* accepted with counts out of range */
	return ret;
}

static int put(struct image *img, uint32_t type, const ProtobufCMessage *m)
{
	uint8_t buf[1024];
	size_t n = protobuf_c_message_get_packed_size(m);

	if (n > sizeof(buf))
		abort();
	n = protobuf_c_message_pack(m, buf);
	return image_write_state(img, type, buf, n);
}

/* A small machine image shaped by @p (4 bytes) into a fresh buffer. */
static uint8_t *gen_machine(const uint8_t *p, size_t *len)
{
	static uint8_t mem[FUZZ_PAGES * 4096];
	struct image_header hdr = { .codec = (enum image_codec)(p[0] % 3) };
	Vmrun__MachineConfig mc;
	Vmrun__MemSegment seg, *segp = &seg;
	Vmrun__MemLayout l;
	Vmrun__VmState vm;
	Vmrun__VcpuSection vs;
	unsigned int i, cpus = p[1] % 4 + 1;
	uint8_t lbuf[256], *out;
	const void *data;
	struct stream *s;
	struct image *img;
	size_t n;
	int ret;

	if (p[0] & 0x80) {
		hdr.has_base = true;
		hdr.base_hash = p[3];
		hdr.base_path = "/nonexistent/base.img";
	}
	memset(mem, 0, sizeof(mem));
	for (i = 0; i < FUZZ_PAGES; i++)
		if (p[2] >> (i % 8) & 1)
			memset(mem + i * 4096, (int)(i + p[3]), 4096);
	if (stream_open_mem_write(&s) || image_writer_create(s, &hdr, &img))
		abort();
	vmrun__machine_config__init(&mc);
	mc.mem_bytes = FUZZ_PAGES * 4096;
	mc.nr_vcpus = cpus;
	ret = put(img, VMSNAP_STATE_MACHINE, &mc.base);
	vmrun__mem_segment__init(&seg);
	seg.size = FUZZ_PAGES * 4096;
	vmrun__mem_layout__init(&l);
	l.n_segments = 1;
	l.segments = &segp;
	n = vmrun__mem_layout__pack(&l, lbuf);
	ret = ret ?: image_write_layout(img, VMSNAP_LAYOUT_MEM, lbuf, n);
	vmrun__vm_state__init(&vm);
	ret = ret ?: put(img, VMSNAP_STATE_VM, &vm.base);
	for (i = 0; i < cpus; i++) {
		vmrun__vcpu_section__init(&vs);
		vs.id = i;
		ret = ret ?: put(img, VMSNAP_STATE_VCPU, &vs.base);
	}
	ret = ret ?: image_write_pages(img, 0, mem, FUZZ_PAGES, NULL);
	ret = ret ?: image_finish(img, NULL);
	image_destroy(img);
	if (ret)
		abort();
	data = stream_mem_data(s, len);
	out = malloc(*len);
	if (!out)
		abort();
	memcpy(out, data, *len);
	stream_close(s);
	return out;
}

static void fuzz_mutated(const uint8_t *data, size_t size)
{
	bool changed = false;
	uint8_t *img, *again;
	size_t len, len2, i;
	int ret;

	if (size < 4)
		return;
	img = gen_machine(data, &len);
	ret = fuzz_info(img, len);
	/* A real image is accepted; one naming a base refused (it is not there). */
	if ((ret == 0) == !!(data[0] & 0x80))
		abort();
	for (i = 4; i + 3 <= size; i += 3) {
		size_t off = (data[i] | (size_t)data[i + 1] << 8) % len;

		if (data[i + 2]) {
			img[off] ^= data[i + 2];
			changed = true;
		}
	}
	if ((size - 4) % 3 == 1 && data[size - 1]) {
		len = data[size - 1] * len / 256;
		changed = true;
	}
	if (fuzz_info(img, len) == 0 && changed && FUZZ_CHANGES_REFUSED) {
		/* Xors may cancel out: only a real change must be refused. */
		again = gen_machine(data, &len2);
		if (len2 != len || memcmp(again, img, len))
			abort(); /* a changed image accepted */
		free(again);
	}
	free(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	if (data[0] & 1)
		fuzz_mutated(data + 1, size - 1);
	else
		fuzz_info(data + 1, size - 1);
	return 0;
}
