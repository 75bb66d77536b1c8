/* SPDX-License-Identifier: MIT */
#ifndef VMM_VMRUN_MIGRATE_CMD_H
#define VMM_VMRUN_MIGRATE_CMD_H

/* The command line's side of live migration (migrate/migrate.h). */

#include <stdbool.h>
#include <stddef.h>

#include "control.pb-c.h"

struct machine;
struct machine_config;

/* Target for the frozen end of a migration when none is asked for. */
#define MIGRATE_DEFAULT_DOWNTIME_MS 300

/*
 * vmrun run --incoming URI: waits for one migration and runs what
 * arrives, with @cfg's console, disks and network back ends, refusing a
 * machine of another size (@mem_set, @cpus_set: the user gave --mem,
 * --cpus). Returns vmrun's exit status.
 */
int run_incoming(const char *uri, const struct machine_config *cfg,
		 bool mem_set, bool cpus_set, const char *ctl_path);

/*
 * The MIGRATE request of the control socket, run on the event loop:
 * connects to q->uri and migrates @m there. On success @m has been
 * stopped (vmrun exits 0 once the reply is sent) and @res holds the
 * figures (its strings point into @uri_buf); on failure @m runs on and
 * @msg says why. @progress (may be NULL) gets progress frames.
 */
int ctl_migrate(struct machine *m, const Vmrun__CtlRequest *q,
		Vmrun__CtlMigrateResult *res, char *uri_buf, size_t uri_len,
		void (*progress)(void *opaque, unsigned long long done,
				 unsigned long long total),
		void *opaque, char *msg, size_t msglen);

/* The client: "migrate URI [options]" into @req; 0 or EXIT_USAGE. */
int ctl_migrate_parse(int argc, char **argv, Vmrun__CtlRequest *req,
		      bool *json);

/* The client: the result, one line or one JSON object. */
void ctl_migrate_print(const Vmrun__CtlMigrateResult *r, bool json);

#endif /* VMM_VMRUN_MIGRATE_CMD_H */
