/* SPDX-License-Identifier: MIT */
/* vmrun ctl SOCKET OP: the client of a running VM's control socket. */
#include "vmrun/ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.pb-c.h"
#include "kernel/util/compiler.h"
#include "snapshot/image.h"
#include "snapshot/pool.h"
#include "snapshot/vmsnap.h"
#include "vmrun/migrate_cmd.h"
#include "vmrun/vmrun.h"

static void ctl_usage(FILE *f)
{
	fprintf(f,
		"usage: vmrun ctl SOCKET status|pause|resume|stop|checkpoint|migrate-cancel\n"
		"       vmrun ctl SOCKET reset [--verify]\n"
		"       vmrun ctl SOCKET save FILE [--compress lz4|zstd|none]\n"
		"                                  [--incremental] [--live]\n"
		"                                  [--live-rounds N] [--threads N]\n"
		"                                  [--json]\n"
		"       vmrun ctl SOCKET migrate URI [--downtime MS] [--bandwidth MB/s]\n"
		"                                    [--max-time S] [--link-timeout S]\n"
		"                                    [--no-auto-converge] [--threads N]\n"
		"                                    [--connections N]\n"
		"                                    [--compress auto|lz4|zstd|none]\n"
		"                                    [--json]\n"
		"\n"
		"Talks to a VM started with 'vmrun run --ctl SOCKET' (or 'vmrun\n"
		"restore --ctl SOCKET').\n"
		"\n"
		"save writes a snapshot image of the running VM to FILE: it freezes\n"
		"the vCPUs and devices, writes the image to a temporary file beside\n"
		"FILE, syncs it, renames it to FILE and lets the VM run on. On any\n"
		"failure the VM runs on untouched and an older FILE is kept. The\n"
		"image is restored with 'vmrun restore FILE'. On a terminal a\n"
		"progress bar shows each pass over memory; then one summary line.\n"
		"  --compress C   lz4 (default), zstd, or none (uncompressed, guest\n"
		"                 pages page-aligned in the file)\n"
		"  --incremental  only the pages written since the last save of this\n"
		"                 VM, over that image (the base, which must stay\n"
		"                 where it was, or beside FILE): restoring FILE\n"
		"                 reads the whole chain. The first save of a VM\n"
		"                 starts dirty tracking, which then stays on; a\n"
		"                 VM restored with --ctl tracks from the restore,\n"
		"                 so its first save may be incremental over the\n"
		"                 image it was restored from.\n"
		"  --live         write memory while the vCPUs run, then again what\n"
		"                 they wrote meanwhile, in rounds (at most 8), and\n"
		"                 freeze them only for the last pages, the state and\n"
		"                 the fsync: the image holds the VM as it was at the\n"
		"                 end of the save. Can be combined with --incremental.\n"
		"  --live-rounds N  live, with at least N (1 to 8) rounds while the\n"
		"                 vCPUs run, however small they get\n"
		"  --threads N    compress on N threads while pages are scanned and\n"
		"                 written (default: one per CPU, up to 4)\n"
		"  --json         print the result as one JSON object\n"
		"\n"
		"migrate moves the running VM to a 'vmrun run --incoming URI' on\n"
		"this or another host (URI: tcp:HOST:PORT, unix:PATH, or fd:N of\n"
		"the VM's process): the destination first checks that it can\n"
		"build this machine (memory, vCPUs, CPU features, devices) and\n"
		"refuses before any page is sent if not; then memory is sent\n"
		"while the vCPUs run, in rounds, until what is left fits the\n"
		"downtime target, and the vCPUs are frozen for the last pages\n"
		"and the state. The VM stops here only once the destination has\n"
		"loaded all of it and said so; vmrun then exits 0. On any\n"
		"failure before that (refused, connection lost or stalled for\n"
		"--link-timeout, cancelled, out of time or rounds) the VM runs on\n"
		"here untouched. While it runs, 'status' on another connection shows\n"
		"its phase, rates and throttle, and 'migrate-cancel' ends it.\n"
		"  --downtime MS  the target for the frozen end (default 300); it is\n"
		"                 never knowingly exceeded: a migration that cannot\n"
		"                 get there in 100 rounds gives up instead\n"
		"  --bandwidth MB/s  cap the rate while the vCPUs run (the frozen\n"
		"                 end goes at full speed)\n"
		"  --max-time S   give up after S seconds\n"
		"  --link-timeout S  give up when the link makes no progress for S\n"
		"                 seconds (default 60)\n"
		"  --no-auto-converge  never throttle the vCPUs; by default, each\n"
		"                 round that does not shrink the dirty memory by an\n"
		"                 eighth takes 20%%, then 10%% more (up to 99%%) of\n"
		"                 the vCPUs' time until it does\n"
		"  --compress C   auto (default): lz4 (zstd under a --bandwidth of\n"
		"                 100 MB/s or less), each batch sent raw instead\n"
		"                 while every compression thread is busy, so a\n"
		"                 link faster than the CPUs is not held to their\n"
		"                 pace; or lz4, zstd or none for every batch\n"
		"  --threads N    compress on N threads while the stream goes out\n"
		"                 (default: one per CPU, up to 4); the destination\n"
		"                 decompresses on as many as it has, up to 4\n"
		"  --connections N  send the stream on N connections (2 to 16,\n"
		"                 tcp: or unix:), a thread each, when one cannot\n"
		"                 fill the link (default 1: the stream shares the\n"
		"                 control connection)\n"
		"  --json         print the result as one JSON object\n"
		"\n"
		"migrate-cancel gives up the migration under way; it is answered at\n"
		"once, and the migration's own reply says it was cancelled. Up to\n"
		"the moment the destination is told to run the guest, the VM runs\n"
		"on here as if nothing had happened.\n"
		"\n"
		"checkpoint keeps the VM's memory and state in memory (replacing an\n"
		"earlier checkpoint); reset puts the VM back to it, copying back only\n"
		"the pages written since, then the VM, device and vCPU state, and\n"
		"lets it run on. Disk contents are not part of it: a VM with disks\n"
		"cannot take one. A reset ends the chain of incremental saves (the\n"
		"next save is a full one).\n"
		"  --verify       after the reset, compare all memory and state with\n"
		"                 the checkpoint and fail naming the first difference\n"
		"\n"
		"exit status: 0 done, 1 the VMM refused or failed, 2 bad\n"
		"arguments or no VM at SOCKET.\n");
}

static void print_save(const Vmrun__CtlSaveResult *s, bool json)
{
	/* Guest bytes the image stands for, per image byte. */
	double ratio =
		s->bytes ? (double)s->pages * 4096.0 / (double)s->bytes : 0;

	if (json) {
		printf("{\"path\":");
		json_str(stdout, s->path);
		printf(",\"codec\":\"%s\",\"bytes\":%llu,"
		       "\"mem_bytes\":%llu,\"pages\":%llu,\"zero_pages\":%llu,"
		       "\"ratio\":%.2f,\"ms\":%.3f,\"frozen_ms\":%.3f,"
		       "\"content_hash\":\"%016llx\",\"incremental\":%s,"
		       "\"base_hash\":\"%016llx\",\"links\":%u,"
		       "\"live\":%s,\"rounds\":%u}\n",
		       s->codec, (unsigned long long)s->bytes,
		       (unsigned long long)s->mem_bytes,
		       (unsigned long long)s->pages,
		       (unsigned long long)s->zero_pages, ratio,
		       (double)s->ns / 1e6, (double)s->frozen_ns / 1e6,
		       (unsigned long long)s->content_hash,
		       s->incremental ? "true" : "false",
		       (unsigned long long)s->base_hash, s->links,
		       s->live ? "true" : "false", s->rounds);
		return;
	}
	if (s->incremental)
		printf("saved %s: incremental over %016llx (image %u of its "
		       "chain), %llu pages written since (%llu zero), %.1f MiB "
		       "image (%s), %.0f ms (vCPUs frozen %.0f ms)\n",
		       s->path, (unsigned long long)s->base_hash, s->links,
		       (unsigned long long)s->pages,
		       (unsigned long long)s->zero_pages,
		       (double)s->bytes / 1048576.0, s->codec,
		       (double)s->ns / 1e6, (double)s->frozen_ns / 1e6);
	else if (s->live)
		printf("saved %s live: %llu MiB of guest memory, %llu pages (%llu zero) "
		       "in %u rounds with the vCPUs running and one frozen, "
		       "%.1f MiB image (%s, %.1fx), %.0f ms (vCPUs frozen %.0f ms)\n",
		       s->path, (unsigned long long)(s->mem_bytes >> 20),
		       (unsigned long long)s->pages,
		       (unsigned long long)s->zero_pages, s->rounds,
		       (double)s->bytes / 1048576.0, s->codec, ratio,
		       (double)s->ns / 1e6, (double)s->frozen_ns / 1e6);
	else
		printf("saved %s: %llu MiB of guest memory, %llu pages (%llu zero), "
		       "%.1f MiB image (%s, %.1fx), %.0f ms (vCPUs frozen %.0f ms)\n",
		       s->path, (unsigned long long)(s->mem_bytes >> 20),
		       (unsigned long long)s->pages,
		       (unsigned long long)s->zero_pages,
		       (double)s->bytes / 1048576.0, s->codec, ratio,
		       (double)s->ns / 1e6, (double)s->frozen_ns / 1e6);
}

/* Draws the save's progress bar on stderr; returns the percentage shown. */
static int show_bar(const Vmrun__CtlProgress *p, int last)
{
	int pct = p->total ? (int)(p->done * 100 / p->total) : 100;

	if (pct == last)
		return last;
	fprintf(stderr, "\rsaving: [%-40.*s] %3d%%", pct * 40 / 100,
		"========================================", pct);
	return pct;
}

/* Parses "save FILE [options]" into @req; returns 0 or EXIT_USAGE. */
static int parse_save(int argc, char **argv, Vmrun__CtlRequest *req, char *path,
		      size_t plen, bool *json)
{
	int i;

	if (argc < 4) {
		die_msg("ctl save: expected a FILE");
		return EXIT_USAGE;
	}
	if (argv[3][0] == '/') {
		snprintf(path, plen, "%s", argv[3]);
	} else {
		char cwd[2048];

		if (!getcwd(cwd, sizeof(cwd))) {
			die_msg("ctl save: getcwd: %s", strerror(errno));
			return EXIT_USAGE;
		}
		if ((size_t)snprintf(path, plen, "%s/%s", cwd, argv[3]) >=
		    plen) {
			die_msg("ctl save: path too long");
			return EXIT_USAGE;
		}
	}
	req->path = path;
	for (i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			*json = true;
		} else if (!strcmp(argv[i], "--incremental")) {
			req->incremental = true;
		} else if (!strcmp(argv[i], "--live")) {
			req->live = true;
		} else if (!strcmp(argv[i], "--live-rounds") && i + 1 < argc) {
			if (parse_uint(argv[++i], VMSNAP_LIVE_MAX_ROUNDS,
				       &req->live_rounds)) {
				die_msg("--live-rounds %s: expected 1 to %d",
					argv[i], VMSNAP_LIVE_MAX_ROUNDS);
				return EXIT_USAGE;
			}
			req->live = true;
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			if (parse_uint(argv[++i], POOL_MAX_THREADS,
				       &req->threads)) {
				die_msg("--threads %s: expected 1 to %d",
					argv[i], POOL_MAX_THREADS);
				return EXIT_USAGE;
			}
		} else if (!strcmp(argv[i], "--compress") && i + 1 < argc) {
			enum image_codec codec;

			req->codec = argv[++i];
			if (image_codec_parse(req->codec, &codec) < 0) {
				die_msg("--compress %s: expected lz4, zstd or none",
					req->codec);
				return EXIT_USAGE;
			}
		} else {
			die_msg("ctl save: unexpected argument '%s'", argv[i]);
			return EXIT_USAGE;
		}
	}
	return 0;
}

/* vmrun ctl SOCKET OP: the client. */
int cmd_ctl(int argc, char **argv)
{
	static const struct {
		const char *name;
		Vmrun__CtlOp op;
	} ops[] = {
		{ "status", VMRUN__CTL_OP__CTL_OP_STATUS },
		{ "pause", VMRUN__CTL_OP__CTL_OP_PAUSE },
		{ "resume", VMRUN__CTL_OP__CTL_OP_RESUME },
		{ "stop", VMRUN__CTL_OP__CTL_OP_STOP },
		{ "save", VMRUN__CTL_OP__CTL_OP_SAVE },
		{ "checkpoint", VMRUN__CTL_OP__CTL_OP_CHECKPOINT },
		{ "reset", VMRUN__CTL_OP__CTL_OP_RESET },
		{ "migrate", VMRUN__CTL_OP__CTL_OP_MIGRATE },
		{ "migrate-cancel", VMRUN__CTL_OP__CTL_OP_MIGRATE_CANCEL },
	};
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	Vmrun__CtlRequest req;
	Vmrun__CtlReply *r;
	uint8_t hdr[4], *buf;
	char path[4096];
	bool json = false;
	size_t n, off;
	unsigned int i;
	uint32_t len;
	int fd, status, bar = -1;

	if (argc == 2 &&
	    (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		ctl_usage(stdout);
		return 0;
	}
	if (argc < 3) {
		ctl_usage(stderr);
		return EXIT_USAGE;
	}
	for (i = 0; i < ARRAY_SIZE(ops) && strcmp(ops[i].name, argv[2]); i++)
		;
	if (i == ARRAY_SIZE(ops)) {
		die_msg("ctl: unknown operation '%s'", argv[2]);
		return EXIT_USAGE;
	}
	vmrun__ctl_request__init(&req);
	req.op = ops[i].op;
	if (req.op == VMRUN__CTL_OP__CTL_OP_SAVE) {
		status =
			parse_save(argc, argv, &req, path, sizeof(path), &json);
		if (status)
			return status;
		/* A bar for a person at a terminal; scripts get one reply. */
		req.progress = !json && isatty(STDERR_FILENO);
	} else if (req.op == VMRUN__CTL_OP__CTL_OP_MIGRATE) {
		status = ctl_migrate_parse(argc, argv, &req, &json);
		if (status)
			return status;
		req.progress = !json && isatty(STDERR_FILENO);
	} else if (req.op == VMRUN__CTL_OP__CTL_OP_RESET && argc == 4 &&
		   !strcmp(argv[3], "--verify")) {
		req.verify = true;
	} else if (argc != 3) {
		die_msg("ctl %s: unexpected argument '%s'", argv[2], argv[3]);
		return EXIT_USAGE;
	}
	if (strlen(argv[1]) >= sizeof(sa.sun_path)) {
		die_msg("ctl: socket path too long");
		return EXIT_USAGE;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[1]);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		die_msg("ctl: cannot connect to %s: %s", argv[1],
			strerror(errno));
		return EXIT_USAGE;
	}
	n = vmrun__ctl_request__get_packed_size(&req);
	buf = malloc(4 + CTL_MAX_FRAME);
	if (!buf || n > CTL_MAX_FRAME) {
		free(buf);
		close(fd);
		return EXIT_VMM_ERROR;
	}
	buf[0] = (uint8_t)n;
	buf[1] = (uint8_t)(n >> 8);
	buf[2] = (uint8_t)(n >> 16);
	buf[3] = 0;
	vmrun__ctl_request__pack(&req, buf + 4);
	if (send(fd, buf, 4 + n, MSG_NOSIGNAL) != (ssize_t)(4 + n)) {
		die_msg("ctl: the VMM closed the connection");
		free(buf);
		close(fd);
		return EXIT_VMM_ERROR;
	}
	/* Progress frames (if asked for), then the reply. */
	for (;;) {
		if (recv(fd, hdr, 4, MSG_WAITALL) != 4) {
			if (bar >= 0)
				fputc('\n', stderr);
			die_msg("ctl: the VMM closed the connection");
			free(buf);
			close(fd);
			return EXIT_VMM_ERROR;
		}
		len = hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
		      (uint32_t)hdr[3] << 24;
		off = len <= CTL_MAX_FRAME ?
			      (size_t)recv(fd, buf, len, MSG_WAITALL) :
			      0;
		r = off == len ? vmrun__ctl_reply__unpack(NULL, len, buf) :
				 NULL;
		if (!r || !r->progress || !req.progress)
			break;
		bar = show_bar(r->progress, bar);
		vmrun__ctl_reply__free_unpacked(r, NULL);
	}
	close(fd);
	free(buf);
	if (bar >= 0)
		fputc('\n', stderr);
	if (!r) {
		die_msg("ctl: malformed reply");
		return EXIT_VMM_ERROR;
	}
	if (r->save) {
		print_save(r->save, json);
	} else if (r->migrate) {
		ctl_migrate_print(r->migrate, json);
	} else if (r->reset) {
		if (req.op == VMRUN__CTL_OP__CTL_OP_CHECKPOINT)
			printf("checkpoint: %llu pages in %.3f ms\n",
			       (unsigned long long)r->reset->pages,
			       (double)r->reset->ns / 1e6);
		else
			printf("reset: %llu pages copied back in %.3f ms%s\n",
			       (unsigned long long)r->reset->pages,
			       (double)r->reset->ns / 1e6,
			       r->reset->verified ? ", verified" : "");
	} else if (!json) {
		printf("state %s\n", r->state);
		if (r->nr_vcpus)
			printf("vcpus %u\nmem %llu MiB\n", r->nr_vcpus,
			       (unsigned long long)(r->mem_bytes >> 20));
		if (r->mem_loading)
			printf("mem loading lazily: %llu of %llu pages read\n",
			       (unsigned long long)r->mem_loaded_pages,
			       (unsigned long long)r->mem_data_pages);
		for (n = 0; n < r->n_vcpus; n++)
			printf("vcpu %u exits %llu io %llu mmio %llu\n",
			       r->vcpus[n]->id,
			       (unsigned long long)r->vcpus[n]->exits,
			       (unsigned long long)r->vcpus[n]->io_exits,
			       (unsigned long long)r->vcpus[n]->mmio_exits);
		if (r->migrating)
			ctl_migrate_print_status(r->migrating);
	}
	status = r->error ? EXIT_VMM_ERROR : 0;
	if (r->error && json) {
		printf("{\"error\":%d,\"message\":", r->error);
		json_str(stdout, r->message);
		printf("}\n");
	}
	if (r->error)
		die_msg("ctl %s: %s", argv[2], r->message);
	vmrun__ctl_reply__free_unpacked(r, NULL);
	return status;
}
