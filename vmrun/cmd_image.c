/* SPDX-License-Identifier: MIT */
/* vmrun image info|verify FILE: what a snapshot image holds. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machine.pb-c.h"
#include "snapshot/vmsnap.h"
#include "vmrun/vmrun.h"

static void image_usage(FILE *f)
{
	fprintf(f,
		"usage: vmrun image info FILE [--json]\n"
		"       vmrun image verify FILE\n"
		"       vmrun image dump FILE [--section N [--inner]]\n"
		"\n"
		"info reads the whole image and shows what it holds: format, codec,\n"
		"chain, vCPUs, devices, memory (pages, zero pages, image size and\n"
		"ratio). verify checks every checksum, decompresses every batch and\n"
		"decodes every state message, and prints 'ok' or why not. Both\n"
		"follow an incremental image's chain of bases and check each link\n"
		"the same way: each must be there (where it was saved, or beside\n"
		"the image that names it) with the content hash its successor\n"
		"names. Neither runs anything.\n"
		"\n"
		"dump lists the image's state and layout sections (index, kind,\n"
		"the protobuf message each holds, size); with --section N it\n"
		"writes that section's bytes to standard output, and with --inner\n"
		"the message a vCPU or device section wraps, for protoc:\n"
		"  vmrun image dump F --section N --inner |\n"
		"      protoc --proto_path=proto --decode=vmrun.VcpuState \\\n"
		"      proto/vcpu_x86.proto\n"
		"\n"
		"exit status: 0 a good image, 2 bad arguments or a bad image, 1\n"
		"another failure.\n");
}

static void print_info(const char *path, const struct vmsnap_info *inf,
		       bool json)
{
	double ratio =
		inf->bytes ? (double)inf->pages * 4096.0 / (double)inf->bytes :
			     0;
	unsigned int i;

	if (json) {
		printf("{\"path\":");
		json_str(stdout, path);
		printf(",\"codec\":\"%s\",\"aligned\":%s,\"live\":%s,"
		       "\"base\":",
		       image_codec_name(inf->codec),
		       inf->aligned ? "true" : "false",
		       inf->live ? "true" : "false");
		if (inf->has_base) {
			printf("{\"hash\":\"%016llx\",\"path\":",
			       (unsigned long long)inf->base_hash);
			json_str(stdout, inf->base_path);
			printf("}");
		} else {
			printf("null");
		}
		printf(",\"links\":%u,\"chain_pages\":%llu", inf->links,
		       (unsigned long long)inf->chain_pages);
		printf(",\"content_hash\":\"%016llx\",\"vcpu_model\":",
		       (unsigned long long)inf->content_hash);
		json_str(stdout, inf->vcpu_model);
		printf(",\"saved_by\":");
		json_str(stdout, inf->vmm_version);
		printf(",\"vcpus\":%u,\"mem_bytes\":%llu,\"devices\":[",
		       inf->nr_vcpus, (unsigned long long)inf->mem_bytes);
		for (i = 0; i < inf->nr_devs; i++) {
			printf(i ? "," : "");
			json_str(stdout, inf->devs[i]);
		}
		printf("],\"disks\":%u,\"nets\":%u,\"pages\":%llu,"
		       "\"zero_pages\":%llu,\"bytes\":%llu,\"ratio\":%.2f}\n",
		       inf->nr_disks, inf->nr_nets,
		       (unsigned long long)inf->pages,
		       (unsigned long long)inf->zero_pages,
		       (unsigned long long)inf->bytes, ratio);
		return;
	}
	printf("image     %s\n", path);
	printf("format    vmrun image v1, %s%s%s\n",
	       image_codec_name(inf->codec),
	       inf->aligned ? ", page-aligned" : "",
	       inf->live ? ", saved live" : "");
	if (inf->has_base)
		printf("chain     incremental over %016llx (%s), %u images "
		       "in all, each checked\n",
		       (unsigned long long)inf->base_hash, inf->base_path,
		       inf->links);
	else
		printf("chain     none (a full image)\n");
	printf("hash      %016llx\n", (unsigned long long)inf->content_hash);
	printf("saved by  %s\n", inf->vmm_version);
	printf("vcpus     %u (%s)\n", inf->nr_vcpus, inf->vcpu_model);
	printf("memory    %llu MiB\n",
	       (unsigned long long)(inf->mem_bytes >> 20));
	printf("devices  ");
	for (i = 0; i < inf->nr_devs; i++)
		printf(" %s", inf->devs[i]);
	printf("\ndisks     %u\nnets      %u\n", inf->nr_disks, inf->nr_nets);
	printf("pages     %llu (%llu zero, %llu with data)\n",
	       (unsigned long long)inf->pages,
	       (unsigned long long)inf->zero_pages,
	       (unsigned long long)(inf->pages - inf->zero_pages));
	printf("size      %.1f MiB (%.1fx smaller than the guest's memory)\n",
	       (double)inf->bytes / 1048576.0, ratio);
}

struct dump {
	long want; /* the section to write out, or -1: list them */
	bool inner;
	bool found;
};

/* The message in a section, and for a wrapper the message it wraps. */
static const char *section_message(bool layout, uint32_t type, const void *data,
				   size_t len, char *inner, size_t ilen)
{
	inner[0] = 0;
	if (layout)
		return type == VMSNAP_LAYOUT_MEM ? "vmrun.MemLayout" : "?";
	switch (type) {
	case VMSNAP_STATE_MACHINE:
		return "vmrun.MachineConfig";
	case VMSNAP_STATE_VM:
		return "vmrun.VmState";
	case VMSNAP_STATE_VCPU:
		snprintf(inner, ilen, "vmrun.VcpuState");
		return "vmrun.VcpuSection";
	case VMSNAP_STATE_DEVICE: {
		Vmrun__DeviceState *ds =
			vmrun__device_state__unpack(NULL, len, data);

		if (ds) {
			snprintf(inner, ilen, "%s (%s)", ds->type, ds->name);
			vmrun__device_state__free_unpacked(ds, NULL);
		}
		return "vmrun.DeviceState";
	}
	case VMSNAP_STATE_DISKS:
		return "vmrun.MachineConfig (disks)";
	default:
		return "?";
	}
}

/* Writes the wrapped message of a vCPU or device section. */
static int write_inner(uint32_t type, const void *data, size_t len)
{
	Vmrun__VcpuSection *vs;
	Vmrun__DeviceState *ds;
	size_t n = 0;

	if (type == VMSNAP_STATE_VCPU &&
	    (vs = vmrun__vcpu_section__unpack(NULL, len, data))) {
		n = fwrite(vs->state.data, 1, vs->state.len, stdout);
		n = n == vs->state.len;
		vmrun__vcpu_section__free_unpacked(vs, NULL);
	} else if (type == VMSNAP_STATE_DEVICE &&
		   (ds = vmrun__device_state__unpack(NULL, len, data))) {
		n = fwrite(ds->data.data, 1, ds->data.len, stdout);
		n = n == ds->data.len;
		vmrun__device_state__free_unpacked(ds, NULL);
	} else {
		die_msg("image dump: --inner is for vCPU and device sections");
		return -EINVAL;
	}
	return n ? 0 : -EIO;
}

static int dump_section(void *opaque, unsigned int index, bool layout,
			uint32_t type, const void *data, size_t len)
{
	struct dump *d = opaque;
	char inner[96];
	const char *msg;

	if (d->want < 0) {
		msg = section_message(layout, type, data, len, inner,
				      sizeof(inner));
		printf("%3u  %-6s %u  %-30s %8zu bytes%s%s\n", index,
		       layout ? "layout" : "state", type, msg, len,
		       inner[0] ? "  inner: " : "", inner);
		return 0;
	}
	if ((long)index != d->want)
		return 0;
	d->found = true;
	if (d->inner)
		return write_inner(layout ? 0 : type, data, len);
	return fwrite(data, 1, len, stdout) == len ? 0 : -EIO;
}

static int cmd_image_dump(int argc, char **argv)
{
	struct dump d = { .want = -1 };
	char err[512], *end;
	int i, ret;

	for (i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--section") && i + 1 < argc) {
			d.want = strtol(argv[++i], &end, 10);
			if (*end || d.want < 0) {
				die_msg("--section %s: expected an index",
					argv[i]);
				return EXIT_USAGE;
			}
		} else if (!strcmp(argv[i], "--inner")) {
			d.inner = true;
		} else {
			die_msg("image dump: unexpected argument '%s'",
				argv[i]);
			return EXIT_USAGE;
		}
	}
	if (d.inner && d.want < 0) {
		die_msg("image dump: --inner needs --section N");
		return EXIT_USAGE;
	}
	ret = vmsnap_sections(argv[2], dump_section, &d, err, sizeof(err));
	if (ret < 0) {
		if (!err[0])
			snprintf(err, sizeof(err), "%s", strerror(-ret));
		die_msg("image dump %s: %s", argv[2], err);
		return ret == -EINVAL || ret == -EBADMSG ||
				       ret == -EPROTONOSUPPORT ?
			       EXIT_USAGE :
			       EXIT_VMM_ERROR;
	}
	if (d.want >= 0 && !d.found) {
		die_msg("image dump %s: no section %ld", argv[2], d.want);
		return EXIT_USAGE;
	}
	return 0;
}

int cmd_image(int argc, char **argv)
{
	struct vmsnap_info inf;
	bool json = false, verify;
	char err[512];
	int ret;

	if (argc == 2 &&
	    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		image_usage(stdout);
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "dump"))
		return cmd_image_dump(argc, argv);
	if (argc < 3 ||
	    (strcmp(argv[1], "info") && strcmp(argv[1], "verify"))) {
		image_usage(stderr);
		return EXIT_USAGE;
	}
	verify = !strcmp(argv[1], "verify");
	if (argc == 4 && !verify && !strcmp(argv[3], "--json")) {
		json = true;
	} else if (argc != 3) {
		die_msg("image %s: unexpected argument '%s'", argv[1], argv[3]);
		return EXIT_USAGE;
	}
	ret = vmsnap_info(argv[2], &inf, err, sizeof(err));
	if (ret < 0) {
		die_msg("image %s %s: %s", argv[1], argv[2], err);
		return ret == -EINVAL || ret == -EBADMSG ||
				       ret == -EPROTONOSUPPORT ?
			       EXIT_USAGE :
			       EXIT_VMM_ERROR;
	}
	if (verify && inf.links > 1)
		printf("%s: ok (%llu pages, content hash %016llx; its chain of "
		       "%u images, %llu pages in all, checked)\n",
		       argv[2], (unsigned long long)inf.pages,
		       (unsigned long long)inf.content_hash, inf.links,
		       (unsigned long long)inf.chain_pages);
	else if (verify)
		printf("%s: ok (%llu pages, content hash %016llx)\n", argv[2],
		       (unsigned long long)inf.pages,
		       (unsigned long long)inf.content_hash);
	else
		print_info(argv[2], &inf, json);
	return 0;
}
