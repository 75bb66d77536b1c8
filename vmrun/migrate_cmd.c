/* SPDX-License-Identifier: MIT */
/*
 * Live migration on the command line: vmrun run --incoming URI (the
 * destination) and vmrun ctl SOCKET migrate URI (the source, through the
 * running VM's control socket). See docs/migration-protocol.md.
 */
#include "vmrun/migrate_cmd.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernel/machine.h"
#include "kernel/util/log.h"
#include "migrate/migrate.h"
#include "snapshot/vmsnap.h"
#include "vmrun/vmrun.h"

/* Where a destination listens, as the source must name it. */
static void uri_text(const struct migrate_uri *u, char *buf, size_t len)
{
	if (u->kind == MIGRATE_TCP)
		snprintf(buf, len, "tcp:%s%s%s:%s",
			 strchr(u->host, ':') ? "[" : "", u->host,
			 strchr(u->host, ':') ? "]" : "", u->port);
	else if (u->kind == MIGRATE_UNIX)
		snprintf(buf, len, "unix:%s", u->path);
	else
		snprintf(buf, len, "fd:%d", u->fd);
}

int run_incoming(const char *uri, const struct machine_config *cfg,
		 bool mem_set, bool cpus_set, const char *ctl_path)
{
	struct vmsnap_restore_opts o = { 0 };
	struct migrate_uri u;
	struct vmsnap_stats st;
	struct machine *m;
	char err[512], where[400];
	unsigned int i;
	int lfd = -1, fd, ret;

	if (migrate_uri_parse(uri, &u, err, sizeof(err)) < 0) {
		die_msg("--incoming %s", err);
		return EXIT_USAGE;
	}
	if (u.kind != MIGRATE_FD) {
		lfd = migrate_listen(&u, err, sizeof(err));
		if (lfd < 0) {
			die_msg("--incoming: %s", err);
			return lfd == -EINVAL ? EXIT_USAGE : EXIT_VMM_ERROR;
		}
	}
	uri_text(&u, where, sizeof(where));
	/* The line an operator (or a test) waits for before migrating. */
	fprintf(stderr, "vmrun: waiting for a migration on %s\n", where);
	fd = migrate_accept(lfd, &u, MIGRATE_IO_TIMEOUT_MS, err, sizeof(err));
	if (fd < 0 && lfd >= 0)
		close(lfd);
	if (fd < 0) {
		die_msg("--incoming: %s", err);
		return fd == -EINVAL ? EXIT_USAGE : EXIT_VMM_ERROR;
	}
	o.console = cfg->console;
	for (i = 0; i < cfg->nr_disks; i++)
		o.disks[i] = cfg->disks[i];
	for (i = 0; i < cfg->nr_nets; i++)
		o.nets[i] = cfg->nets[i];
	o.want_mem = mem_set ? cfg->mem : 0;
	o.want_cpus = cpus_set ? cfg->cpus : 0;
	/* No dirty tracking yet: starting it would come before the guest
	 * runs, in the downtime, and a later save or migration starts it
	 * itself; there is no image to be incremental over. */
	o.track_dirty = false;
	ret = migrate_recv(fd, lfd, &u, where, &o, &m, &st, err, sizeof(err));
	if (u.kind != MIGRATE_FD) {
		close(fd);
		close(lfd);
	}
	if (u.kind == MIGRATE_UNIX)
		unlink(u.path);
	if (ret < 0) {
		die_msg("incoming migration: %s", err);
		return ret == -EINVAL || ret == -EBADMSG ||
				       ret == -EPROTONOSUPPORT ?
			       EXIT_USAGE :
			       EXIT_VMM_ERROR;
	}
	/* Where the guest lives now, before it runs: switches learn it. */
	machine_announce(m);
	fprintf(stderr,
		"vmrun: migrated in on %s: %llu MiB of guest memory, %llu pages (%llu zero), %.1f MiB received in %.0f ms\n",
		where, (unsigned long long)(st.mem_bytes >> 20),
		(unsigned long long)st.pages, (unsigned long long)st.zero_pages,
		(double)st.bytes / 1048576.0, (double)st.ns / 1e6);
	return vmrun_serve(m, ctl_path, NULL);
}

static void forward_progress(void *opaque, uint64_t done, uint64_t total)
{
	const struct ctl_migrate_hooks *h = opaque;

	if (h->progress)
		h->progress(h->opaque, done, total);
}

static int forward_service(void *opaque)
{
	const struct ctl_migrate_hooks *h = opaque;

	return h->service ? h->service(h->opaque) : 0;
}

/* The request's codec (lz4 when it names none). */
/*
 * The request's codec, and whether it is chosen as the migration goes
 * ("auto", the default): lz4, or zstd under a bandwidth cap of
 * MIGRATE_AUTO_ZSTD_MBS or less (a slow link is worth zstd's ratio),
 * with batches sent raw while every compression thread is busy.
 * -EINVAL for a name that is none of these.
 */
static int req_codec(const Vmrun__CtlRequest *q, enum image_codec *c,
		     bool *adaptive)
{
	*adaptive = !q->codec[0] || !strcmp(q->codec, "auto");
	if (*adaptive) {
		*c = q->bandwidth_mbs &&
				     q->bandwidth_mbs <= MIGRATE_AUTO_ZSTD_MBS ?
			     IMAGE_CODEC_ZSTD :
			     IMAGE_CODEC_LZ4;
		return 0;
	}
	return image_codec_parse(q->codec, c);
}

void ctl_migrate_fill(Vmrun__CtlMigrateResult *res,
		      const struct migrate_stats *st,
		      const Vmrun__CtlRequest *q, const char *uri)
{
	vmrun__ctl_migrate_result__init(res);
	res->uri = (char *)(uintptr_t)uri;
	res->bytes = st->bytes;
	res->pages = st->pages;
	res->zero_pages = st->zero_pages;
	res->data_pages = st->data_pages;
	res->mem_bytes = st->mem_bytes;
	res->ns = st->ns;
	res->frozen_ns = st->frozen_ns;
	res->accept_ns = st->accept_ns;
	res->rounds = st->rounds;
	{
		enum image_codec c = IMAGE_CODEC_LZ4;
		bool adaptive = false;

		(void)req_codec(q, &c, &adaptive);
		res->codec = (char *)(uintptr_t)image_codec_name(c);
		res->adaptive = adaptive;
	}
	res->batches = st->batches;
	res->raw_batches = st->raw_batches;
	res->downtime_ms =
		q->downtime_ms ? q->downtime_ms : MIGRATE_DEFAULT_DOWNTIME_MS;
	res->phase = (char *)(uintptr_t)migrate_phase_name(st->phase);
	res->round = st->round;
	res->bandwidth = st->bandwidth;
	res->dirty_rate = st->dirty_rate;
	res->remaining_pages = st->remaining_pages;
	res->expected_downtime_ns = st->expected_downtime_ns;
	res->throttle = st->throttle;
	res->throttle_max = st->throttle_max;
	res->pass_done = st->pass_done;
	res->pass_total = st->pass_total;
	res->bandwidth_mbs = q->bandwidth_mbs;
	res->max_time_s = q->max_time_s;
	res->auto_converge = !q->no_auto_converge;
	res->threads = vmsnap_threads(q->threads);
	res->connections = st->connections ? st->connections : 1;
}

int ctl_migrate(struct machine *m, const Vmrun__CtlRequest *q,
		Vmrun__CtlMigrateResult *res, char *uri_buf, size_t uri_len,
		const struct ctl_migrate_hooks *h, char *msg, size_t msglen)
{
	struct migrate_opts o = { .codec = IMAGE_CODEC_LZ4 };
	struct migrate_uri u;
	unsigned int downtime =
		q->downtime_ms ? q->downtime_ms : MIGRATE_DEFAULT_DOWNTIME_MS;
	int fd, ret;

	msg[0] = 0;
	memset(h->live, 0, sizeof(*h->live));
	if (req_codec(q, &o.codec, &o.adaptive) < 0)
		return err_printf(msg, msglen, -EINVAL,
				  "codec: expected auto, lz4, zstd or none");
	ret = migrate_uri_parse(q->uri, &u, msg, msglen);
	if (ret < 0)
		return ret;
	o.downtime_ns = (uint64_t)downtime * 1000000ULL;
	o.bandwidth = (uint64_t)q->bandwidth_mbs * 1000000ULL;
	o.max_ns = (uint64_t)q->max_time_s * 1000000000ULL;
	o.auto_converge = !q->no_auto_converge;
	o.threads = q->threads;
	o.connections = q->connections;
	o.uri = &u;
	o.progress = forward_progress;
	o.service = forward_service;
	o.opaque = (void *)(uintptr_t)h;
	snprintf(uri_buf, uri_len, "%s", q->uri);
	o.io_timeout_ms = q->link_timeout_s ? q->link_timeout_s * 1000 :
					      MIGRATE_IO_TIMEOUT_MS;
	fd = migrate_connect(&u, (int)o.io_timeout_ms, msg, msglen);
	if (fd < 0)
		return fd;
	ret = migrate_send(m, fd, uri_buf, &o, h->live, msg, msglen);
	if (u.kind != MIGRATE_FD)
		close(fd);
	if (ret < 0)
		return ret;
	ctl_migrate_fill(res, h->live, q, uri_buf);
	return 0;
}

/* migrate's numeric options: name, request field, range 1..max, unit. */
static const struct number_opt {
	const char *name;
	size_t off;
	unsigned long max;
	const char *unit;
} number_opts[] = {
	{ "--downtime", offsetof(Vmrun__CtlRequest, downtime_ms), 60000, "ms" },
	{ "--bandwidth", offsetof(Vmrun__CtlRequest, bandwidth_mbs), 1000000,
	  "MB/s" },
	{ "--max-time", offsetof(Vmrun__CtlRequest, max_time_s), 604800, "s" },
	{ "--link-timeout", offsetof(Vmrun__CtlRequest, link_timeout_s), 3600,
	  "s" },
	{ "--threads", offsetof(Vmrun__CtlRequest, threads), 64, "threads" },
	{ "--connections", offsetof(Vmrun__CtlRequest, connections), 16,
	  "connections" },
};

static const struct number_opt *number_option(const char *arg)
{
	unsigned int k;

	for (k = 0; k < ARRAY_SIZE(number_opts); k++)
		if (!strcmp(arg, number_opts[k].name))
			return &number_opts[k];
	return NULL;
}

int ctl_migrate_parse(int argc, char **argv, Vmrun__CtlRequest *req, bool *json)
{
	const struct number_opt *n;
	char err[256];
	struct migrate_uri u;
	int i;

	if (argc < 4) {
		die_msg("ctl migrate: expected a URI (tcp:HOST:PORT, unix:PATH or fd:N)");
		return EXIT_USAGE;
	}
	if (migrate_uri_parse(argv[3], &u, err, sizeof(err)) < 0) {
		die_msg("ctl migrate: %s", err);
		return EXIT_USAGE;
	}
	req->uri = argv[3];
	for (i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			*json = true;
		} else if ((n = number_option(argv[i])) && i + 1 < argc) {
			if (parse_uint(
				    argv[++i], n->max,
				    (unsigned int *)((char *)req + n->off))) {
				die_msg("%s %s: expected 1 to %lu (%s)",
					argv[i - 1], argv[i], n->max, n->unit);
				return EXIT_USAGE;
			}
		} else if (!strcmp(argv[i], "--no-auto-converge")) {
			req->no_auto_converge = true;
		} else if (!strcmp(argv[i], "--compress") && i + 1 < argc) {
			enum image_codec codec;

			req->codec = argv[++i];
			if (strcmp(req->codec, "auto") &&
			    image_codec_parse(req->codec, &codec) < 0) {
				die_msg("--compress %s: expected auto, lz4, zstd "
					"or none",
					req->codec);
				return EXIT_USAGE;
			}
		} else {
			die_msg("ctl migrate: unexpected argument '%s'",
				argv[i]);
			return EXIT_USAGE;
		}
	}
	if (req->connections > 1 && u.kind == MIGRATE_FD) {
		die_msg("ctl migrate: --connections %u needs tcp:HOST:PORT or "
			"unix:PATH (fd:N is one connection)",
			req->connections);
		return EXIT_USAGE;
	}
	return 0;
}

/* Guest bytes sent as data per byte on the wire. */
static double ratio(const Vmrun__CtlMigrateResult *r)
{
	return r->bytes ? (double)r->data_pages * 4096.0 / (double)r->bytes : 0;
}

void ctl_migrate_print(const Vmrun__CtlMigrateResult *r, bool json)
{
	double mib = (double)r->bytes / 1048576.0, s = (double)r->ns / 1e9;

	if (json) {
		printf("{\"migrated\":");
		json_str(stdout, r->uri);
		printf(",\"codec\":\"%s\",\"bytes\":%llu,\"mem_bytes\":%llu,"
		       "\"pages\":%llu,\"zero_pages\":%llu,\"ratio\":%.2f,"
		       "\"ms\":%.3f,\"downtime_ms\":%.3f,\"accept_ms\":%.3f,"
		       "\"downtime_target_ms\":%u,"
		       "\"rounds\":%u,\"mib_per_s\":%.1f,"
		       "\"throttle_max\":%u,\"bandwidth_cap_mbs\":%u,"
		       "\"threads\":%u,\"auto\":%s,\"batches\":%llu,"
		       "\"raw_batches\":%llu,\"connections\":%u}\n",
		       r->codec, (unsigned long long)r->bytes,
		       (unsigned long long)r->mem_bytes,
		       (unsigned long long)r->pages,
		       (unsigned long long)r->zero_pages, ratio(r),
		       (double)r->ns / 1e6, (double)r->frozen_ns / 1e6,
		       (double)r->accept_ns / 1e6, r->downtime_ms, r->rounds,
		       s > 0 ? mib / s : 0, r->throttle_max, r->bandwidth_mbs,
		       r->threads, r->adaptive ? "true" : "false",
		       (unsigned long long)r->batches,
		       (unsigned long long)r->raw_batches,
		       r->connections ? r->connections : 1);
		return;
	}
	printf("migrated to %s: %llu MiB of guest memory, %llu pages (%llu "
	       "zero) in %u rounds with the vCPUs running and one frozen, "
	       "%.1f MiB sent (%s%s on %u threads, %u connection%s, ratio "
	       "%.2f, %.1f MiB/s), "
	       "%.0f ms (vCPUs "
	       "frozen %.1f ms, %.1f of them for the destination to load; "
	       "target %u ms)",
	       r->uri, (unsigned long long)(r->mem_bytes >> 20),
	       (unsigned long long)r->pages, (unsigned long long)r->zero_pages,
	       r->rounds, mib, r->adaptive ? "auto: " : "", r->codec,
	       r->threads, r->connections ? r->connections : 1,
	       r->connections > 1 ? "s" : "", ratio(r), s > 0 ? mib / s : 0,
	       (double)r->ns / 1e6, (double)r->frozen_ns / 1e6,
	       (double)r->accept_ns / 1e6, r->downtime_ms);
	if (r->adaptive && r->batches)
		printf("; %llu of %llu batches raw while the threads were busy "
		       "or did not shrink them",
		       (unsigned long long)r->raw_batches,
		       (unsigned long long)r->batches);
	if (r->throttle_max)
		printf("; auto-converge throttled the vCPUs up to %u%%",
		       r->throttle_max);
	printf("\n");
}

void ctl_migrate_print_status(const Vmrun__CtlMigrateResult *r)
{
	printf("migration to %s: phase %s, round %u, %llu of %llu pages this "
	       "pass, %.1f MiB sent in %.1f s\n",
	       r->uri, r->phase, r->round, (unsigned long long)r->pass_done,
	       (unsigned long long)r->pass_total, (double)r->bytes / 1048576.0,
	       (double)r->ns / 1e9);
	printf("migration rate %.1f MiB/s, guest dirtying %.1f MiB/s, %llu "
	       "pages dirty, expected downtime %.1f ms (target %u ms), "
	       "throttle %u%%\n",
	       (double)r->bandwidth / 1048576.0,
	       (double)r->dirty_rate / 1048576.0,
	       (unsigned long long)r->remaining_pages,
	       (double)r->expected_downtime_ns / 1e6, r->downtime_ms,
	       r->throttle);
}
