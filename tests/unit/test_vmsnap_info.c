/* SPDX-License-Identifier: MIT */
/*
 * Hostile machine images that are well-formed at the format level (every
 * checksum holds) but wrong as a machine: vmsnap_info() (vmrun image
 * info/verify) must refuse each with -EINVAL and a reason.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "machine.pb-c.h"
#include "snapshot/stream.h"
#include "snapshot/vmsnap.h"
#include "tests/unit/unit_tests.h"
#include "vm_state.pb-c.h"

enum hostile {
	H_NONE,
	H_HUGE_VCPUS,
	H_TWO_MACHINES,
	H_UNKNOWN_STATE,
	H_NO_VM_STATE,
	H_VCPU_OUT_OF_RANGE,
	H_PAGES_PAST_SEGMENT,
	H_GARBAGE_STATE,
};

static void put(struct image *img, uint32_t type, const ProtobufCMessage *m)
{
	uint8_t buf[4096];
	size_t n = protobuf_c_message_pack(m, buf);

	TEST_ASSERT(image_write_state(img, type, buf, n) == 0, "state");
}

/* Writes a small machine image to @path with one thing made wrong; with
 * @base_path, an incremental one over the image there named @base_hash. */
static void write_image_over(const char *path, enum hostile h,
			     const char *base_path, uint64_t base_hash)
{
	Vmrun__MachineConfig mc;
	Vmrun__MemLayout l;
	Vmrun__MemSegment seg, *segp = &seg;
	Vmrun__VmState vm;
	Vmrun__VcpuSection vs;
	struct image_header hdr = { .codec = IMAGE_CODEC_LZ4,
				    .has_base = base_path != NULL,
				    .base_hash = base_hash,
				    .base_path = base_path };
	struct stream *s;
	struct image *img;
	uint8_t *mem = calloc(64, 4096), lbuf[256];
	size_t n;

	TEST_ASSERT(mem && stream_open_file_write(path, &s) == 0, "open");
	TEST_ASSERT(image_writer_create(s, &hdr, &img) == 0, "writer");
	vmrun__machine_config__init(&mc);
	mc.mem_bytes = 64 * 4096;
	mc.nr_vcpus = h == H_HUGE_VCPUS ? 1000000 : 1;
	put(img, VMSNAP_STATE_MACHINE, &mc.base);
	if (h == H_TWO_MACHINES)
		put(img, VMSNAP_STATE_MACHINE, &mc.base);
	vmrun__mem_segment__init(&seg);
	seg.size = 32 * 4096; /* half the pages written below */
	vmrun__mem_layout__init(&l);
	l.n_segments = 1;
	l.segments = &segp;
	n = vmrun__mem_layout__pack(&l, lbuf);
	TEST_ASSERT(image_write_layout(img, VMSNAP_LAYOUT_MEM, lbuf, n) == 0,
		    "layout");
	vmrun__vm_state__init(&vm);
	if (h != H_NO_VM_STATE)
		put(img, VMSNAP_STATE_VM, &vm.base);
	if (h == H_UNKNOWN_STATE)
		put(img, 77, &vm.base);
	if (h == H_GARBAGE_STATE)
		TEST_ASSERT(image_write_state(img, VMSNAP_STATE_VCPU,
					      "\xff\xff\xff", 3) == 0,
			    "garbage");
	vmrun__vcpu_section__init(&vs);
	vs.id = h == H_VCPU_OUT_OF_RANGE ? 5 : 0;
	put(img, VMSNAP_STATE_VCPU, &vs.base);
	mem[0] = 1;
	TEST_ASSERT(image_write_pages(img, 0, mem,
				      h == H_PAGES_PAST_SEGMENT ? 64 : 32,
				      NULL) == 0,
		    "pages");
	TEST_ASSERT(image_finish(img, NULL) == 0 && stream_sync(s) == 0,
		    "finish");
	image_destroy(img);
	stream_close(s);
	free(mem);
}

static void write_image(const char *path, enum hostile h)
{
	write_image_over(path, h, NULL, 0);
}

/* Chains: a good one, a missing base, a base with another hash, a base
 * moved beside its successor, a full image naming a base. */
static void test_vmsnap_info_chain(void)
{
	char a[64], b[96], c[96], d[64], err[512];
	struct vmsnap_info inf;
	uint64_t ha;
	int ret;

	snprintf(a, sizeof(a), "/tmp/vmrun-chain-%d-a.img", (int)getpid());
	snprintf(b, sizeof(b), "/tmp/vmrun-chain-%d-b.img", (int)getpid());
	snprintf(d, sizeof(d), "/tmp/vmrun-chain-%d", (int)getpid());
	snprintf(c, sizeof(c), "%s/vmrun-chain-%d-a.img", d, (int)getpid());
	write_image(a, H_NONE);
	ret = vmsnap_info(a, &inf, err, sizeof(err));
	TEST_ASSERT(ret == 0 && inf.links == 1, "the base: %d %s", ret, err);
	ha = inf.content_hash;

	write_image_over(b, H_NONE, a, ha);
	ret = vmsnap_info(b, &inf, err, sizeof(err));
	TEST_CHECK(ret == 0 && inf.links == 2 && inf.has_base &&
			   inf.base_hash == ha && inf.chain_pages == 64,
		   "a good chain: %d %s (links %u)", ret, err, inf.links);

	write_image_over(b, H_NONE, a, ha ^ 1);
	ret = vmsnap_info(b, &inf, err, sizeof(err));
	TEST_CHECK(ret == -EINVAL && strstr(err, "not its base"),
		   "a base with another hash: %d %s", ret, err);

	write_image_over(b, H_NONE, "/nonexistent/a.img", ha);
	ret = vmsnap_info(b, &inf, err, sizeof(err));
	TEST_CHECK(ret == -EINVAL && strstr(err, "missing"),
		   "a missing base: %d %s", ret, err);

	/* The base found beside its successor, under its recorded name. */
	TEST_ASSERT(mkdir(d, 0700) == 0 && rename(a, c) == 0, "move");
	snprintf(b, sizeof(b), "%s/b.img", d);
	write_image_over(b, H_NONE, a, ha);
	ret = vmsnap_info(b, &inf, err, sizeof(err));
	TEST_CHECK(ret == 0 && inf.links == 2 && !strcmp(inf.base_path, c),
		   "a moved chain: %d %s (base %s)", ret, err, inf.base_path);

	/* The base truncated: its tail no longer holds END. */
	TEST_ASSERT(truncate(c, 100) == 0, "truncate");
	ret = vmsnap_info(b, &inf, err, sizeof(err));
	TEST_CHECK(ret == -EINVAL && strstr(err, "not a complete image"),
		   "a truncated base: %d %s", ret, err);
	unlink(c);
	unlink(b);
	rmdir(d);
	snprintf(b, sizeof(b), "/tmp/vmrun-chain-%d-b.img", (int)getpid());
	unlink(b);
}

static void test_vmsnap_info_hostile(void)
{
	static const struct {
		enum hostile h;
		const char *name;
	} cases[] = {
		{ H_HUGE_VCPUS, "a million vCPUs" },
		{ H_TWO_MACHINES, "two machine sections" },
		{ H_UNKNOWN_STATE, "an unknown state type" },
		{ H_NO_VM_STATE, "no VM state" },
		{ H_VCPU_OUT_OF_RANGE, "a vCPU past the count" },
		{ H_PAGES_PAST_SEGMENT, "pages past the segment" },
		{ H_GARBAGE_STATE, "a state that does not decode" },
	};
	struct vmsnap_info inf;
	char path[64], err[512];
	unsigned int i;
	int ret;

	snprintf(path, sizeof(path), "/tmp/vmrun-hostile-%d.img",
		 (int)getpid());
	write_image(path, H_NONE);
	ret = vmsnap_info(path, &inf, err, sizeof(err));
	TEST_ASSERT(ret == 0 && inf.nr_vcpus == 1 && inf.pages == 32,
		    "the good image: %d %s", ret, err);
	for (i = 0; i < ARRAY_SIZE(cases); i++) {
		write_image(path, cases[i].h);
		ret = vmsnap_info(path, &inf, err, sizeof(err));
		TEST_CHECK(ret == -EINVAL && err[0], "%s: accepted (%d) %s",
			   cases[i].name, ret, err);
	}
	unlink(path);
}

const struct test_case vmsnap_info_tests[] = {
	{ "hostile", test_vmsnap_info_hostile },
	{ "chain", test_vmsnap_info_chain },
	{ NULL, NULL },
};
