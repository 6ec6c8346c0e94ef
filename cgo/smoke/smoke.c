/*
 * smoke.c - drives libasbb.so through its C ABI (asbb.h) the way the Slurm
 * plugins do: dlopen, every export, several threads, tiny buffers.
 *
 *   smoke LIB GOOD_CONFIG DOWN_CONFIG
 *
 * GOOD_CONFIG names a migrated database with account "rich" (plenty of
 * money) and "poor" (almost none), priced partition "cpu" ($5/node-hour,
 * hold multiplier 1.2), unpriced partition "free", and priced partition
 * "ü-part" without a maximum time (its refusal message holds multi-byte
 * UTF-8). DOWN_CONFIG names an unreachable database with
 * submit.on_db_error = "reject".
 *
 * Prints "HOLD <id>" lines the Go test checks against the database, and
 * "smoke: ok" at the end. Exits 1 on the first failed check.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asbb.h"

#define NO_VAL 0xfffffffeu
#define NO_VAL16 ((uint16_t) 0xfffe)
#define NO_VAL64 0xfffffffffffffffeull

static int (*p_init)(const char *, char *, size_t);
static void (*p_fini)(void);
static int (*p_abi)(void);
static int (*p_admit)(const asbb_job_t *, asbb_decision_t *, char *, size_t);
static int (*p_modify)(const asbb_job_t *, asbb_decision_t *, char *, size_t);
static int (*p_settle)(const asbb_job_end_t *, char *, size_t);

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "smoke: FAIL: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

#define CHECK(cond, ...) do { if (!(cond)) fail(__VA_ARGS__); } while (0)

static void *sym(void *h, const char *name)
{
	void *p = dlsym(h, name);

	CHECK(p != NULL, "dlsym %s: %s", name, dlerror());
	return p;
}

static asbb_job_t job_of(const char *account, const char *partition,
			 uint32_t nodes, uint32_t minutes)
{
	asbb_job_t j;

	memset(&j, 0, sizeof(j));
	j.abi_version = ASBB_ABI_VERSION;
	j.account = account;
	j.partition = partition;
	j.user_name = "ann";
	j.user_id = 1000;
	j.time_limit = minutes;
	j.min_nodes = nodes;
	j.max_nodes = NO_VAL;
	j.num_tasks = NO_VAL;
	j.cpus_per_task = NO_VAL16;
	j.min_cpus = NO_VAL;
	j.pn_min_memory = NO_VAL64;
	return j;
}

static asbb_decision_t decision(void)
{
	asbb_decision_t d;

	memset(&d, 0x7f, sizeof(d)); /* garbage the library must overwrite */
	d.abi_version = ASBB_ABI_VERSION;
	return d;
}

/* Valid UTF-8 (no truncated sequence). */
static int utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	while (*p) {
		int n = (*p < 0x80) ? 0 : ((*p & 0xe0) == 0xc0) ? 1 :
			((*p & 0xf0) == 0xe0) ? 2 : ((*p & 0xf8) == 0xf0) ? 3 : -1;
		if (n < 0)
			return 0;
		p++;
		while (n--) {
			if ((*p & 0xc0) != 0x80)
				return 0;
			p++;
		}
	}
	return 1;
}

/* Every buffer length from 0 to past the message: NUL-terminated, never
 * written past, a valid UTF-8 prefix of the full message. */
static void check_truncation(const asbb_job_t *j, int want_rc)
{
	char full[1024], buf[300];
	asbb_decision_t d = decision();
	size_t full_len, n;
	int rc;

	rc = p_admit(j, &d, full, sizeof(full));
	CHECK(rc == want_rc, "truncation job: rc %d, want %d (%s)", rc, want_rc, full);
	full_len = strlen(full);
	CHECK(full_len > 20 && full_len < 250, "odd message length %zu", full_len);
	CHECK(strstr(full, "\xc3\xbc") != NULL, "message lacks the multi-byte partition name: %s", full);
	for (n = 0; n <= full_len + 2; n++) {
		memset(buf, 0x5a, sizeof(buf));
		d = decision();
		rc = p_admit(j, &d, n ? buf : NULL, n);
		CHECK(rc == want_rc, "len %zu: rc %d", n, rc);
		CHECK(buf[n] == 0x5a && buf[n + 1] == 0x5a, "len %zu: wrote past the buffer", n);
		if (n == 0)
			continue;
		CHECK(memchr(buf, 0, n) != NULL, "len %zu: not NUL-terminated", n);
		CHECK(strncmp(buf, full, strlen(buf)) == 0, "len %zu: not a prefix: %s", n, buf);
		CHECK(utf8_ok(buf), "len %zu: cut inside a character: %s", n, buf);
		CHECK(strlen(buf) + 4 >= (n - 1 < full_len ? n - 1 : full_len),
		      "len %zu: only %zu bytes written", n, strlen(buf));
	}
	/* A non-NULL buffer with length 0 is left alone. */
	buf[0] = 0x5a;
	d = decision();
	p_admit(j, &d, buf, 0);
	CHECK(buf[0] == 0x5a, "msg_len 0 wrote into the buffer");
}

#define THREADS 8
#define PER_THREAD 6

static void *worker(void *arg)
{
	long id = (long) arg;
	int i;

	for (i = 0; i < PER_THREAD; i++) {
		asbb_job_t j = job_of((i % 2) ? "rich" : "ignored",
				      (i % 2) ? "cpu" : "free", 1, 10);
		asbb_decision_t d = decision();
		char msg[256];
		int rc = p_admit(&j, &d, msg, sizeof(msg));

		if (rc != ASBB_OK)
			fail("thread %ld admit %d: rc %d: %s", id, i, rc, msg);
		if ((i % 2) && (d.kind != ASBB_KIND_HELD || !d.hold_id[0]))
			fail("thread %ld: kind %d", id, d.kind);
		if (!(i % 2) && d.kind != ASBB_KIND_FREE)
			fail("thread %ld: free kind %d", id, d.kind);
		if (i % 2)
			printf("HOLD %s\n", d.hold_id);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	char msg[512], tiny[16], comment[64];
	asbb_decision_t d;
	asbb_job_t j;
	asbb_job_end_t e;
	pthread_t th[THREADS];
	void *h;
	int rc;
	long i;

	if (argc != 4) {
		fprintf(stderr, "usage: smoke LIB GOOD_CONFIG DOWN_CONFIG\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	CHECK(h != NULL, "dlopen: %s", dlerror());
	p_init = sym(h, "asbb_init");
	p_fini = sym(h, "asbb_fini");
	p_abi = sym(h, "asbb_abi_version");
	p_admit = sym(h, "asbb_admit");
	p_modify = sym(h, "asbb_modify");
	p_settle = sym(h, "asbb_settle");

	CHECK(p_abi() == ASBB_ABI_VERSION, "abi %d", p_abi());

	/* Before init. */
	j = job_of("rich", "cpu", 1, 60);
	d = decision();
	rc = p_admit(&j, &d, msg, sizeof(msg));
	CHECK(rc == ASBB_ERR_NOT_INIT, "admit before init: rc %d", rc);
	CHECK(d.kind == ASBB_KIND_NONE, "kind before init %d", d.kind);

	rc = p_init("/nonexistent/asbb.toml", msg, sizeof(msg));
	CHECK(rc == ASBB_ERR_CONFIG && strstr(msg, "nonexistent"), "bad config: rc %d %s", rc, msg);

	rc = p_init(argv[2], msg, sizeof(msg));
	CHECK(rc == ASBB_OK, "init: rc %d: %s", rc, msg);
	rc = p_init(argv[2], msg, sizeof(msg));
	CHECK(rc == ASBB_OK, "second init: rc %d: %s", rc, msg);
	rc = p_init(NULL, NULL, 0);
	CHECK(rc == ASBB_OK, "init(NULL) while initialised: rc %d", rc);

	/* Bad arguments. */
	rc = p_admit(NULL, &d, msg, sizeof(msg));
	CHECK(rc == ASBB_ERR_INVALID, "NULL job: rc %d", rc);
	rc = p_admit(&j, NULL, msg, sizeof(msg));
	CHECK(rc == ASBB_ERR_INVALID, "NULL decision: rc %d", rc);
	rc = p_settle(NULL, msg, sizeof(msg));
	CHECK(rc == ASBB_ERR_INVALID, "NULL job end: rc %d", rc);
	j.abi_version = 99;
	d = decision();
	rc = p_admit(&j, &d, msg, sizeof(msg));
	CHECK(rc == ASBB_ERR_ABI, "abi 99: rc %d", rc);
	j.abi_version = ASBB_ABI_VERSION;
	d = decision();
	d.abi_version = 0;
	rc = p_admit(&j, &d, msg, sizeof(msg));
	CHECK(rc == ASBB_ERR_ABI, "decision abi 0: rc %d", rc);

	/* Affordable: 1 node x 1 h x $5 x 1.2 = 6. */
	j = job_of("rich", "cpu", 1, 60);
	snprintf(comment, sizeof(comment), "site:x");
	j.admin_comment = comment;
	d = decision();
	rc = p_admit(&j, &d, msg, sizeof(msg));
	CHECK(rc == ASBB_OK, "affordable: rc %d: %s", rc, msg);
	CHECK(d.kind == ASBB_KIND_HELD, "affordable kind %d", d.kind);
	CHECK(d.hold_id[0] && strcmp(d.amount, "6") == 0, "hold %s amount %s", d.hold_id, d.amount);
	snprintf(msg, sizeof(msg), "site:x,asbb:%s", d.hold_id);
	CHECK(strcmp(d.admin_comment, msg) == 0, "admin_comment %s, want %s", d.admin_comment, msg);
	printf("HOLD %s\n", d.hold_id);
	/* The library kept no pointer: scribble over the inputs. */
	memset(comment, 'Z', sizeof(comment) - 1);

	/* Refused, with a tiny buffer on purpose. */
	j = job_of("poor", "cpu", 10, 24 * 60);
	d = decision();
	memset(tiny, 0x5a, sizeof(tiny));
	rc = p_admit(&j, &d, tiny, 8);
	CHECK(rc == ASBB_REFUSED, "refused: rc %d", rc);
	CHECK(d.kind == ASBB_KIND_REFUSED && !d.hold_id[0] && !d.amount[0] && !d.admin_comment[0],
	      "refused decision kind %d hold '%s'", d.kind, d.hold_id);
	CHECK(strlen(tiny) == 7 && strcmp(tiny, "asbb: a") == 0, "tiny message '%s'", tiny);
	CHECK((unsigned char) tiny[8] == 0x5a, "tiny buffer overrun");

	/* Multi-byte truncation on a deterministic refusal. */
	j = job_of("rich", "\xc3\xbc-part", 1, NO_VAL);
	check_truncation(&j, ASBB_REFUSED);

	/* Free partition. */
	j = job_of("rich", "free", 4, 600);
	d = decision();
	rc = p_admit(&j, &d, msg, sizeof(msg));
	CHECK(rc == ASBB_OK && d.kind == ASBB_KIND_FREE && !d.hold_id[0] && !d.admin_comment[0],
	      "free: rc %d kind %d", rc, d.kind);

	/* Modify by marker: 2 h now, so 12. */
	j = job_of("rich", "cpu", 1, 60);
	d = decision();
	rc = p_admit(&j, &d, msg, sizeof(msg));
	CHECK(rc == ASBB_OK && d.kind == ASBB_KIND_HELD, "admit for modify: rc %d", rc);
	printf("HOLD %s\n", d.hold_id);
	{
		char marker[96], hold[64];
		asbb_decision_t m = decision();
		asbb_job_t ch;

		snprintf(hold, sizeof(hold), "%s", d.hold_id);
		snprintf(marker, sizeof(marker), "asbb:%s", d.hold_id);
		memset(&ch, 0, sizeof(ch));
		ch = job_of(NULL, NULL, NO_VAL, 120);
		ch.user_name = NULL;
		ch.admin_comment = marker;
		ch.job_id_str = "4242";
		rc = p_modify(&ch, &m, msg, sizeof(msg));
		CHECK(rc == ASBB_OK && m.kind == ASBB_KIND_HELD, "modify: rc %d kind %d: %s", rc, m.kind, msg);
		CHECK(strcmp(m.hold_id, hold) == 0 && strcmp(m.amount, "12") == 0,
		      "modify hold %s amount %s", m.hold_id, m.amount);

		/* Settle: 30 min at $5 = 2.50, twice (idempotent). */
		memset(&e, 0, sizeof(e));
		e.abi_version = ASBB_ABI_VERSION;
		e.job_id = 4242;
		e.array_job_id = 0;
		e.array_task_id = NO_VAL;
		e.account = "rich";
		e.partition = "cpu";
		e.user_name = "ann";
		e.admin_comment = marker;
		e.start_time = 1800000000;
		e.end_time = 1800001800;
		e.job_state = 3;
		e.nodes = 1;
		e.cpus = 1;
		e.tres_alloc = "cpu=1,node=1,billing=1";
		rc = p_settle(&e, msg, sizeof(msg));
		CHECK(rc == ASBB_OK && strstr(msg, "charged 2.5"), "settle: rc %d: %s", rc, msg);
		rc = p_settle(&e, msg, sizeof(msg));
		CHECK(rc == ASBB_OK && strstr(msg, "already settled"), "settle again: rc %d: %s", rc, msg);
		e.job_id = 0;
		rc = p_settle(&e, msg, sizeof(msg));
		CHECK(rc == ASBB_ERR_INVALID, "settle job 0: rc %d", rc);
		e.job_id = 4242;
		e.abi_version = 7;
		rc = p_settle(&e, msg, sizeof(msg));
		CHECK(rc == ASBB_ERR_ABI, "settle abi 7: rc %d", rc);
		e.abi_version = ASBB_ABI_VERSION;
	}

	/* Many threads, each new to Go. */
	for (i = 0; i < THREADS; i++)
		CHECK(pthread_create(&th[i], NULL, worker, (void *) i) == 0, "pthread_create");
	for (i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);

	/* fini, then calls fail cleanly, then init again. */
	p_fini();
	p_fini();
	j = job_of("rich", "cpu", 1, 60);
	d = decision();
	rc = p_admit(&j, &d, msg, sizeof(msg));
	CHECK(rc == ASBB_ERR_NOT_INIT, "admit after fini: rc %d", rc);

	/* Database down, on_db_error = reject: refused with a message; the
	 * settlement is spooled and succeeds. */
	rc = p_init(argv[3], msg, sizeof(msg));
	CHECK(rc == ASBB_OK, "init (database down): rc %d: %s", rc, msg);
	d = decision();
	rc = p_admit(&j, &d, msg, sizeof(msg));
	CHECK(rc == ASBB_ERR_UNAVAILABLE && strstr(msg, "unavailable"), "admit (down): rc %d: %s", rc, msg);
	e.job_id = 5151;
	rc = p_settle(&e, msg, sizeof(msg));
	CHECK(rc == ASBB_OK && strstr(msg, "spooled"), "settle (down): rc %d: %s", rc, msg);
	p_fini();

	rc = p_init(argv[2], msg, sizeof(msg));
	CHECK(rc == ASBB_OK, "re-init: rc %d: %s", rc, msg);
	d = decision();
	rc = p_admit(&j, &d, msg, sizeof(msg));
	CHECK(rc == ASBB_OK && d.kind == ASBB_KIND_HELD, "admit after re-init: rc %d: %s", rc, msg);
	printf("HOLD %s\n", d.hold_id);
	p_fini();

	/* The Go runtime cannot be unloaded (NODELETE); dlclose is harmless. */
	dlclose(h);
	printf("smoke: ok\n");
	return 0;
}
