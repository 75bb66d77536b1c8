/* SPDX-License-Identifier: MIT */
/*
 * The snapshot-fuzzing execution engine (see fuzzer.h). Everything but
 * fuzzer_stats() runs in the vCPU thread, inside the harness port's
 * handler, the kick hook or the guest-stop hook.
 */
#include "snapshot/fuzzer.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kernel/dev/harness.h"
#include "kernel/dirty.h"
#include "kernel/machine.h"
#include "kernel/mem.h"
#include "kernel/util/compiler.h"
#include "kernel/util/log.h"
#include "kernel/vcpu.h"
#include "kernel/vm.h"
#include "kernel/x86/vmrun_harness.h"
#include "snapshot/checkpoint.h"
#include "snapshot/vmsnap.h"

struct fuzzer {
	struct machine *m;
	struct vm *vm;
	struct fuzzer_opts o;
	const struct fuzzer_ops *ops;
	void *opaque;
	struct checkpoint *ck;
	struct harness_desc desc;
	uint8_t *buf;
	size_t len;
	bool in_exec;
	bool warmup; /* the first execution from an attached checkpoint */
	bool stopped;
	uint64_t exec_start;
	bool have_timer;
	timer_t timer;
	struct fuzzer_stats st; /* [a] counters */
	char error[512];
};

static const struct harness_ops fuzzer_harness_ops;

static void count(uint64_t *c, uint64_t v)
{
	__atomic_add_fetch(c, v, __ATOMIC_RELAXED);
}

/* Stops the VM with a reason fuzzer_error() gives; returns VCPU_STOP. */
static int fuzz_fail(struct fuzzer *f, const char *fmt, ...) __printf(2, 3);
static int fuzz_fail(struct fuzzer *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->error, sizeof(f->error), fmt, ap);
	va_end(ap);
	f->stopped = true;
	f->in_exec = false;
	vm_stop_detail(f->vm, VM_EXIT_ERROR, "fuzz: %s", f->error);
	return VCPU_STOP;
}

/*
 * The time-out clock: one periodic timer aimed at the vCPU thread, armed
 * at the first execution and left running, so an execution costs no
 * timer call. Each kick compares the execution's age with the time-out
 * (kick()), so one is seen at most a tenth of the time-out late.
 */
static int arm_timer(struct fuzzer *f)
{
	struct itimerspec its = { 0 };
	struct sigevent sev;

	if (!f->o.timeout_ms || f->have_timer)
		return 0;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = vcpu_kick_signal();
	sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
	if (timer_create(CLOCK_MONOTONIC, &sev, &f->timer) < 0)
		return -errno;
	f->have_timer = true;
	its.it_interval.tv_nsec =
		(long)MAX(f->o.timeout_ms / 10, 1u) * 1000000L;
	if (f->o.timeout_ms >= 10000)
		its.it_interval = (struct timespec){ 1, 0 };
	its.it_value = its.it_interval;
	return timer_settime(f->timer, 0, &its, NULL) < 0 ? -errno : 0;
}

static void disarm_timer(struct fuzzer *f)
{
	struct itimerspec its = { 0 };

	if (f->have_timer)
		timer_settime(f->timer, 0, &its, NULL);
}

/* Writes the next input and starts an execution; VCPU_STOP at the end. */
static int start_exec(struct fuzzer *f)
{
	uint32_t len32;
	size_t len = 0;
	int ret;

	if (!f->ops->next(f->opaque, f->buf, f->desc.input_max, &len)) {
		f->stopped = true;
		disarm_timer(f);
		vm_stop_detail(f->vm, VM_EXIT_REQUESTED, "fuzzing finished");
		return VCPU_STOP;
	}
	if (len > f->desc.input_max)
		len = f->desc.input_max;
	f->len = len;
	len32 = (uint32_t)len;
	/* Through the marking path: the next reset copies these back. */
	ret = mem_write(vm_mem(f->vm), f->desc.input_gpa, f->buf, len);
	if (!ret)
		ret = mem_write(
			vm_mem(f->vm),
			f->desc.desc_gpa +
				offsetof(struct vmrun_harness_desc, input_len),
			&len32, sizeof(len32));
	if (ret < 0)
		return fuzz_fail(f, "writing an input: %s", strerror(-ret));
	ret = arm_timer(f);
	if (ret < 0)
		return fuzz_fail(f, "arming the time-out: %s", strerror(-ret));
	f->in_exec = true;
	f->exec_start = vmsnap_now_ns();
	return VCPU_CONTINUE;
}

static int end_exec(struct fuzzer *f, enum fuzz_outcome o, uint32_t code,
		    const char *detail)
{
	struct checkpoint_reset_stats rs;
	struct fuzz_exec e = { 0 };
	char err[512], what[400];
	uint64_t t0;
	int ret;

	/*
	 * The harness's exit is not finished here: the reset finishes it or
	 * leaves it to KVM (x86_vcpu_reload_settle()), and anything reading the
	 * vCPU's state before that finishes it first (vcpu_apply_staged()).
	 */
	f->in_exec = false;
	e.n = f->st.execs;
	e.outcome = o;
	e.code = code;
	e.detail = detail;
	e.input = f->buf;
	e.len = f->len;
	e.exec_ns = vmsnap_now_ns() - f->exec_start;
	if (f->desc.cov_size) {
		e.cov = mem_gpa_to_hva_ro(vm_mem(f->vm), f->desc.cov_gpa,
					  f->desc.cov_size);
		e.cov_size = e.cov ? f->desc.cov_size : 0;
	}
	if (!f->warmup) {
		count(&f->st.execs, 1);
		if (o == FUZZ_CRASH)
			count(&f->st.crashes, 1);
		else if (o == FUZZ_TIMEOUT)
			count(&f->st.timeouts, 1);
		f->ops->done(f->opaque, &e);
	}
	f->warmup = false;

	t0 = vmsnap_now_ns();
	err[0] = 0;
	ret = checkpoint_reset(f->ck, f->m, &rs, err, sizeof(err));
	if (ret < 0)
		return fuzz_fail(f, "%s", err);
	count(&f->st.reset_pages, rs.pages);
	if (f->o.verify_reset) {
		ret = checkpoint_verify(f->ck, f->m, what, sizeof(what));
		if (ret)
			return fuzz_fail(
				f,
				"--verify-reset: after execution %llu (%s): %s",
				(unsigned long long)e.n + 1,
				o == FUZZ_OK	  ? "done" :
				o == FUZZ_TIMEOUT ? "timed out" :
						    "crashed",
				ret < 0 ? strerror(-ret) : what);
	}
	count(&f->st.reset_ns, vmsnap_now_ns() - t0);
	return start_exec(f);
}

static int on_checkpoint(struct fuzzer *f, struct vcpu *vcpu)
{
	const struct harness_desc *d = harness_desc(machine_harness(f->m));
	char err[512];
	uint64_t t0;
	int ret;

	if (f->ck) {
		/* A second checkpoint call within an execution: ends it. */
		return end_exec(f, FUZZ_OK, 0,
				"the guest called checkpoint again");
	}
	if (!d)
		return VCPU_CONTINUE;
	f->desc = *d;
	f->buf = calloc(1, f->desc.input_max);
	if (!f->buf)
		return fuzz_fail(f, "no memory for a %u-byte input buffer",
				 f->desc.input_max);
	ret = vcpu_complete_io(vcpu);
	if (ret < 0)
		return fuzz_fail(f, "completing the guest's I/O: %s",
				 strerror(-ret));
	t0 = vmsnap_now_ns();
	err[0] = 0;
	ret = checkpoint_take(f->m, &f->ck, err, sizeof(err));
	if (ret < 0)
		return fuzz_fail(f, "%s", err);
	f->st.ckpt_ns = vmsnap_now_ns() - t0;
	f->st.ckpt_pages = checkpoint_mem_pages(f->ck);
	/* Pages every execution writes then cost no fault (dirty_hold()). */
	dirty_hold(f->vm, !f->o.no_hold);
	f->st.start_ns = vmsnap_now_ns();
	f->st.cov_size = f->desc.cov_size;
	f->st.input_max = f->desc.input_max;
	if (f->o.verify_reset) {
		char what[400];

		ret = checkpoint_verify(f->ck, f->m, what, sizeof(what));
		if (ret)
			return fuzz_fail(f,
					 "--verify-reset: right after the "
					 "checkpoint: %s",
					 ret < 0 ? strerror(-ret) : what);
	}
	if (f->ops->ready)
		f->ops->ready(f->opaque);
	return start_exec(f);
}

static int harness_event(void *opaque, struct vcpu *vcpu, enum harness_event ev,
			 uint32_t code)
{
	struct fuzzer *f = opaque;
	char detail[64];

	if (f->stopped)
		return VCPU_STOP;
	switch (ev) {
	case HARNESS_CHECKPOINT:
		return on_checkpoint(f, vcpu);
	case HARNESS_DONE:
		if (!f->in_exec)
			return VCPU_CONTINUE;
		return end_exec(f, FUZZ_OK, 0, "done");
	case HARNESS_CRASH:
		if (!f->in_exec)
			return VCPU_CONTINUE;
		if ((code & ~0xffu) == FUZZ_CODE_FAULT)
			snprintf(detail, sizeof(detail),
				 "guest exception, vector %u", code & 0xff);
		else
			snprintf(detail, sizeof(detail),
				 "the guest reported crash code %#x", code);
		return end_exec(f, FUZZ_CRASH, code, detail);
	}
	return VCPU_CONTINUE;
}

static const struct harness_ops fuzzer_harness_ops = {
	.event = harness_event,
};

static int kick(struct vcpu *vcpu __unused, void *opaque)
{
	struct fuzzer *f = opaque;

	if (!f->in_exec || f->stopped ||
	    vmsnap_now_ns() - f->exec_start < f->o.timeout_ms * 1000000ULL)
		return VCPU_CONTINUE;
	return end_exec(f, FUZZ_TIMEOUT, 0, "time-out");
}

static bool guest_stop(struct vcpu *vcpu __unused, enum vm_exit_reason r,
		       const char *detail, void *opaque)
{
	struct fuzzer *f = opaque;
	uint32_t code = r == VM_EXIT_POWEROFF ? FUZZ_CODE_POWEROFF :
			r == VM_EXIT_RESET    ? FUZZ_CODE_RESET :
						FUZZ_CODE_TRIPLE;

	if (!f->in_exec || f->stopped)
		return false;
	/* end_exec() stops the VM itself if the reset fails. */
	end_exec(f, FUZZ_CRASH, code, detail);
	return true;
}

int fuzzer_create(struct machine *m, const struct fuzzer_opts *o,
		  const struct fuzzer_ops *ops, void *opaque,
		  struct fuzzer **out, char *err, size_t errlen)
{
	struct vm *vm = machine_vm(m);
	struct fuzzer *f;

	if (vm_nr_vcpus(vm) != 1)
		return err_printf(err, errlen, -EINVAL,
				  "fuzzing needs a machine with one vCPU, not "
				  "%u",
				  vm_nr_vcpus(vm));
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->m = m;
	f->vm = vm;
	f->o = *o;
	f->ops = ops;
	f->opaque = opaque;
	harness_attach(machine_harness(m), &fuzzer_harness_ops, f);
	vm_set_guest_stop_hook(vm, guest_stop, f);
	if (o->timeout_ms)
		vcpu_set_kick_hook(vm_vcpu(vm, 0), kick, f);
	*out = f;
	return 0;
}

int fuzzer_create_at(struct machine *m, struct checkpoint *ck,
		     const struct harness_desc *d, const struct fuzzer_opts *o,
		     const struct fuzzer_ops *ops, void *opaque,
		     struct fuzzer **out, char *err, size_t errlen)
{
	struct fuzzer *f;
	int ret;

	ret = fuzzer_create(m, o, ops, opaque, &f, err, errlen);
	if (ret < 0)
		return ret;
	f->buf = calloc(1, d->input_max);
	if (!f->buf) {
		fuzzer_free(f);
		return -ENOMEM;
	}
	f->ck = ck;
	f->desc = *d;
	harness_set_desc(machine_harness(m), d);
	f->st.ckpt_pages = checkpoint_mem_pages(ck);
	f->st.start_ns = vmsnap_now_ns();
	f->st.cov_size = d->cov_size;
	f->st.input_max = d->input_max;
	f->in_exec = true;
	f->warmup = true;
	f->exec_start = f->st.start_ns;
	dirty_hold(f->vm, !o->no_hold);
	*out = f;
	return 0;
}

struct checkpoint *fuzzer_take_checkpoint(struct fuzzer *f,
					  struct harness_desc *d)
{
	struct checkpoint *ck = f->ck;

	f->ck = NULL;
	*d = f->desc;
	return ck;
}

void fuzzer_free(struct fuzzer *f)
{
	if (!f)
		return;
	harness_attach(machine_harness(f->m), NULL, NULL);
	vm_set_guest_stop_hook(f->vm, NULL, NULL);
	vcpu_set_kick_hook(vm_vcpu(f->vm, 0), NULL, NULL);
	if (f->have_timer)
		timer_delete(f->timer);
	checkpoint_free(f->ck);
	free(f->buf);
	free(f);
}

void fuzzer_stats(struct fuzzer *f, struct fuzzer_stats *st)
{
	st->execs = __atomic_load_n(&f->st.execs, __ATOMIC_RELAXED);
	st->crashes = __atomic_load_n(&f->st.crashes, __ATOMIC_RELAXED);
	st->timeouts = __atomic_load_n(&f->st.timeouts, __ATOMIC_RELAXED);
	st->reset_pages = __atomic_load_n(&f->st.reset_pages, __ATOMIC_RELAXED);
	st->reset_ns = __atomic_load_n(&f->st.reset_ns, __ATOMIC_RELAXED);
	st->ckpt_ns = f->st.ckpt_ns;
	st->ckpt_pages = f->st.ckpt_pages;
	st->start_ns = f->st.start_ns;
	st->cov_size = f->st.cov_size;
	st->input_max = f->st.input_max;
}

const char *fuzzer_error(struct fuzzer *f)
{
	return f->error;
}

struct checkpoint *fuzzer_checkpoint(struct fuzzer *f)
{
	return f->ck;
}
