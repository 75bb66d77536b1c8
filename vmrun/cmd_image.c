/* SPDX-License-Identifier: MIT */
/* vmrun image info|verify FILE: what a snapshot image holds. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "snapshot/vmsnap.h"
#include "vmrun/vmrun.h"

static void image_usage(FILE *f)
{
	fprintf(f,
		"usage: vmrun image info FILE [--json]\n"
		"       vmrun image verify FILE\n"
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
