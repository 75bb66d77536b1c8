/* SPDX-License-Identifier: MIT */
#ifndef VMM_VMRUN_MIGRATE_CMD_H
#define VMM_VMRUN_MIGRATE_CMD_H

/* The command line's side of live migration (migrate/migrate.h). */

#include <stdbool.h>
#include <stddef.h>

#include "control.pb-c.h"

struct machine;
struct machine_config;
struct migrate_stats;

/* Target for the frozen end of a migration when none is asked for. */
#define MIGRATE_DEFAULT_DOWNTIME_MS 300
/* --compress auto: zstd under a bandwidth cap of this many MB/s or less. */
#define MIGRATE_AUTO_ZSTD_MBS 100

/*
 * vmrun run --incoming URI: waits for one migration and runs what
 * arrives, with @cfg's console, disks and network back ends, refusing a
 * machine of another size (@mem_set, @cpus_set: the user gave --mem,
 * --cpus). Returns vmrun's exit status.
 */
int run_incoming(const char *uri, const struct machine_config *cfg,
		 bool mem_set, bool cpus_set, const char *ctl_path);

/* How the control socket follows a migration it runs. */
struct ctl_migrate_hooks {
	/* Progress frames for the client (may be NULL). */
	void (*progress)(void *opaque, unsigned long long done,
			 unsigned long long total);
	/* The event loop, served while the migration runs (may be NULL):
	 * -errno cancels it (migrate_opts.service). */
	int (*service)(void *opaque);
	void *opaque;
	/* Kept up to date while it runs, for STATUS. */
	struct migrate_stats *live;
};

/*
 * The MIGRATE request of the control socket, run on the event loop
 * (which @h->service keeps serving): connects to q->uri and migrates @m
 * there. On success @m has been stopped (vmrun exits 0 once the reply is
 * sent) and @res holds the figures (its strings point into @uri_buf and
 * static names); on failure @m runs on and @msg says why.
 */
int ctl_migrate(struct machine *m, const Vmrun__CtlRequest *q,
		Vmrun__CtlMigrateResult *res, char *uri_buf, size_t uri_len,
		const struct ctl_migrate_hooks *h, char *msg, size_t msglen);

/* @res from @st (the figures so far, or at the end) and the request. */
void ctl_migrate_fill(Vmrun__CtlMigrateResult *res,
		      const struct migrate_stats *st,
		      const Vmrun__CtlRequest *q, const char *uri);

/* The client: "migrate URI [options]" into @req; 0 or EXIT_USAGE. */
int ctl_migrate_parse(int argc, char **argv, Vmrun__CtlRequest *req,
		      bool *json);

/* The client: the result, one line or one JSON object. */
void ctl_migrate_print(const Vmrun__CtlMigrateResult *r, bool json);

/* The client: a migration under way, as STATUS shows it (two lines). */
void ctl_migrate_print_status(const Vmrun__CtlMigrateResult *r);

#endif /* VMM_VMRUN_MIGRATE_CMD_H */
