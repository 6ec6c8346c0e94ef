/*
 * asbb.h - the C ABI of libasbb.so, the ASBB budget core.
 *
 * This header is written by hand and versioned; it is the only contract
 * between the Go core and its C callers (the job_submit/asbb plugin and the
 * Lua module "asbb"). cgo's generated header is not installed.
 *
 * Ownership rules, for every function below:
 *   - Every pointer argument is borrowed for the duration of the call only.
 *     The library copies what it needs before it returns and never keeps a
 *     pointer given to it.
 *   - Strings may be NULL; NULL and "" both mean "not set".
 *   - Text comes back in buffers the caller owns (msg/msg_len and the fixed
 *     arrays of the out structs). The library always NUL-terminates them and
 *     truncates safely (on a UTF-8 boundary) when they are too small.
 *   - The library never allocates memory that the caller must free.
 *
 * Concurrency: every function may be called from any thread, concurrently.
 * Each call runs under a hard deadline (submit.timeout in the config) and
 * never blocks longer than it. A Go panic is recovered and returned as
 * ASBB_ERR_INTERNAL; it never crosses into the caller.
 *
 * Numeric sentinels: fields that mirror Slurm's job_desc keep Slurm's
 * NO_VAL (0xfffffffe), NO_VAL16 (0xfffe), NO_VAL64 (0xfffffffffffffffe) and
 * INFINITE (0xffffffff) meanings; the library interprets them.
 *
 * Money never crosses this ABI as a number: amounts are decimal strings.
 */
#ifndef ASBB_H
#define ASBB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a struct below changes layout or meaning. */
#define ASBB_ABI_VERSION 1

/* Return codes. Negative values are failures of the library or its
 * environment; 0 and positive values are decisions. */
enum asbb_rc {
	ASBB_OK = 0,             /* accepted: free, held, settled or released */
	ASBB_REFUSED = 1,        /* the budget refuses the job; msg says why */
	ASBB_ERR_INVALID = -1,   /* bad arguments or request (msg says which) */
	ASBB_ERR_CONFIG = -2,    /* config could not be loaded */
	ASBB_ERR_UNAVAILABLE = -3, /* database unreachable or too slow */
	ASBB_ERR_NOT_INIT = -4,  /* asbb_init has not succeeded */
	ASBB_ERR_ABI = -5,       /* abi_version mismatch */
	ASBB_ERR_INTERNAL = -6,  /* a bug (includes recovered panics) */
	ASBB_ERR_NOT_FOUND = -7  /* no such hold/job (settle, modify) */
};

/* What the admission decision was (asbb_decision_t.kind). */
enum asbb_kind {
	ASBB_KIND_NONE = 0,    /* no decision (an error occurred) */
	ASBB_KIND_FREE = 1,    /* unpriced partition: accepted, no hold */
	ASBB_KIND_HELD = 2,    /* accepted, hold taken (hold_id set) */
	ASBB_KIND_REFUSED = 3, /* refused (msg is the user-facing reason) */
	ASBB_KIND_SHADOW = 4,  /* would be refused, accepted by shadow mode */
	ASBB_KIND_DB_ACCEPT = 5 /* database failed; accepted by on_db_error */
};

/*
 * A job as Slurm describes it at submit or modify time: a mirror of the
 * job_desc_msg_t fields ASBB prices with.
 */
typedef struct asbb_job {
	uint32_t abi_version;    /* must be ASBB_ABI_VERSION */
	const char *cluster;     /* ClusterName; NULL = config default */
	const char *account;     /* --account; NULL = resolve by config */
	const char *partition;   /* --partition; NULL = default partition */
	const char *user_name;
	uint32_t user_id;
	uint32_t time_limit;     /* minutes; NO_VAL = unset, INFINITE */
	uint32_t min_nodes;      /* NO_VAL = unset */
	uint32_t max_nodes;
	uint32_t num_tasks;      /* NO_VAL = unset */
	uint16_t cpus_per_task;  /* NO_VAL16 = unset */
	uint32_t min_cpus;       /* total CPUs; NO_VAL = unset */
	uint64_t pn_min_memory;  /* MB; MEM_PER_CPU flag bit 63; NO_VAL64 */
	const char *tres_per_node; /* e.g. "gres:gpu:2" (22.05 form) */
	const char *tres_per_job;  /* e.g. "gres:gpu:4" */
	const char *array_inx;   /* e.g. "1-100%10"; NULL = not an array */
	const char *admin_comment; /* existing admin_comment */
	const char *job_id_str;  /* job_modify only: the pending job's id */
} asbb_job_t;

/* The result of asbb_admit / asbb_modify. */
typedef struct asbb_decision {
	uint32_t abi_version;    /* set by the caller to ASBB_ABI_VERSION */
	int32_t kind;            /* enum asbb_kind */
	char hold_id[64];        /* "" unless a hold exists */
	char amount[48];         /* held amount, decimal string, "" if none */
	/* The admin_comment the job must carry afterwards (existing text with
	 * "asbb:<hold_id>" appended); "" = leave admin_comment unchanged. */
	char admin_comment[1024];
} asbb_decision_t;

/* A finished job, as jobcomp/lua or EpilogSlurmctld see it. */
typedef struct asbb_job_end {
	uint32_t abi_version;    /* must be ASBB_ABI_VERSION */
	const char *cluster;
	uint32_t job_id;
	uint32_t array_job_id;   /* 0 or NO_VAL when not an array task */
	uint32_t array_task_id;  /* NO_VAL when not an array task */
	const char *account;
	const char *partition;
	const char *user_name;
	const char *admin_comment; /* carries "asbb:<hold_id>" */
	int64_t start_time;      /* unix seconds; 0 = never started */
	int64_t end_time;        /* unix seconds */
	uint32_t job_state;      /* Slurm job_state (flag bits are masked) */
	uint32_t nodes;          /* allocated node count */
	uint32_t cpus;           /* total allocated CPUs */
	const char *tres_alloc;  /* e.g. "cpu=4,mem=8G,node=1,gres/gpu=2" */
} asbb_job_end_t;

/* Idempotent. config_path NULL or "" = ASBB_CONFIG or /etc/asbb/asbb.toml.
 * A second call with the library already initialised returns ASBB_OK and
 * keeps the existing pool. */
int asbb_init(const char *config_path, char *msg, size_t msg_len);

/* Closes the connection pool. A later asbb_init opens it again. */
void asbb_fini(void);

/* ASBB_ABI_VERSION of the loaded library. */
int asbb_abi_version(void);

/* Prices the job and takes a hold (job_submit). msg receives the
 * user-facing explanation (refusal reason, shadow/db-error notice). */
int asbb_admit(const asbb_job_t *job, asbb_decision_t *out,
	       char *msg, size_t msg_len);

/* Re-prices a pending job whose request changed (job_modify). job carries
 * the job's new values merged over its current ones, and its current
 * admin_comment. */
int asbb_modify(const asbb_job_t *job, asbb_decision_t *out,
		char *msg, size_t msg_len);

/* Charges the actual cost of a finished job (or array task) and releases
 * its share of the hold. Idempotent. */
int asbb_settle(const asbb_job_end_t *end, char *msg, size_t msg_len);

#ifdef __cplusplus
}
#endif

#endif /* ASBB_H */
