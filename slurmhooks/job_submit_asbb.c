/*****************************************************************************\
 *  job_submit_asbb.c - ASBB budget enforcement at job submission.
 *****************************************************************************
 *  Prices every submitted job and takes a hold against its account's budget
 *  through libasbb.so (the ASBB Go core, see cgo/asbb.h). A job the budget
 *  cannot cover is refused with a message the user sees in sbatch, srun or
 *  salloc; an accepted job carries "asbb:<hold_id>" in its admin_comment.
 *  A pending job whose request changes (job_modify) is re-priced.
 *
 *  Built against the public Slurm headers only. Configure with
 *
 *	JobSubmitPlugins=asbb
 *	PluginDir=/usr/lib/x86_64-linux-gnu/slurm-wlm:<dir of this plugin>
 *
 *  libasbb.so reads its config from $ASBB_CONFIG (in slurmctld's
 *  environment) or /etc/asbb/asbb.toml.
 *
 *  A refusal returns ESLURM_ACCOUNTING_POLICY ("Job violates
 *  accounting/QOS policy ...") rather than ESLURM_INVALID_ACCOUNT: the
 *  account is valid, the budget policy refuses the job, and in Slurm 22.05
 *  a job_modify refusal reaches the user as that error string alone.
\*****************************************************************************/

#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <slurm/slurm.h>
#include <slurm/slurm_errno.h>

#include "asbb.h"

/*
 * Exported by libslurmfull.so, which slurmctld links, but not declared in
 * the public headers. Strings that slurmctld later frees (err_msg, job_desc
 * fields) must come from Slurm's allocator.
 */
extern char *slurm_xstrdup(const char *str);
extern void slurm_xfree(void **item);
extern void slurm_info(const char *format, ...)
	__attribute__((format(printf, 1, 2)));
extern void slurm_error(const char *format, ...)
	__attribute__((format(printf, 1, 2)));

#define ASBB_MSG_LEN 1024

/* Shown when the library gives no message of its own. */
#define ASBB_DEFAULT_REFUSAL "asbb: the job was refused by the budget check"
#define ASBB_NOT_CONFIGURED \
	"asbb: the budget check is not available; the job was not submitted"

const char plugin_name[] = "ASBB budget enforcement";
const char plugin_type[] = "job_submit/asbb";
const uint32_t plugin_version = SLURM_VERSION_NUMBER;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static int initialised = 0;	/* under init_lock, or read atomically */

static int _initialised(void)
{
	return __atomic_load_n(&initialised, __ATOMIC_ACQUIRE);
}

static const char *_kind_str(int32_t kind)
{
	switch (kind) {
	case ASBB_KIND_FREE:
		return "free";
	case ASBB_KIND_HELD:
		return "held";
	case ASBB_KIND_REFUSED:
		return "refused";
	case ASBB_KIND_SHADOW:
		return "shadow";
	case ASBB_KIND_DB_ACCEPT:
		return "db_accept";
	default:
		return "none";
	}
}

/* (Re)initialise the library unless it already is. Returns an asbb_rc. */
static int _init_library(char *msg, size_t msg_len)
{
	const char *path = getenv("ASBB_CONFIG");
	int rc = ASBB_OK;

	pthread_mutex_lock(&init_lock);
	if (!initialised) {
		rc = asbb_init(NULL, msg, msg_len);
		if (rc == ASBB_OK) {
			__atomic_store_n(&initialised, 1, __ATOMIC_RELEASE);
			slurm_info("%s: libasbb initialised (config %s)",
				   plugin_type,
				   path && path[0] ? path : "default");
		} else {
			slurm_error("%s: asbb_init failed (rc=%d): %s",
				    plugin_type, rc, msg);
		}
	}
	pthread_mutex_unlock(&init_lock);
	return rc;
}

/*
 * Set *err_msg to text, keeping a message an earlier plugin of the chain
 * left there (as "earlier\ntext").
 */
static void _set_user_msg(char **err_msg, const char *text)
{
	char *joined;
	size_t len;

	if (!err_msg || !text || !text[0])
		return;
	if (!*err_msg || !(*err_msg)[0]) {
		slurm_xfree((void **) err_msg);
		*err_msg = slurm_xstrdup(text);
		return;
	}
	len = strlen(*err_msg) + 1 + strlen(text) + 1;
	if (!(joined = malloc(len)))
		return;
	snprintf(joined, len, "%s\n%s", *err_msg, text);
	slurm_xfree((void **) err_msg);
	*err_msg = slurm_xstrdup(joined);
	free(joined);
}

/* The job owner's name, or NULL. job_desc_msg_t has no user_name. */
static const char *_user_name(uint32_t uid, struct passwd *pw, char *buf,
			      size_t buf_len)
{
	struct passwd *res = NULL;

	if ((uid == NO_VAL) ||
	    getpwuid_r((uid_t) uid, pw, buf, buf_len, &res) || !res)
		return NULL;
	return res->pw_name;
}

static void _job_from_desc(const job_desc_msg_t *job_desc, const char *user,
			   asbb_job_t *job)
{
	memset(job, 0, sizeof(*job));
	job->abi_version = ASBB_ABI_VERSION;
	job->cluster = NULL;
	job->account = job_desc->account;
	job->partition = job_desc->partition;
	job->user_name = user;
	job->user_id = job_desc->user_id;
	job->time_limit = job_desc->time_limit;
	job->min_nodes = job_desc->min_nodes;
	job->max_nodes = job_desc->max_nodes;
	job->num_tasks = job_desc->num_tasks;
	job->cpus_per_task = job_desc->cpus_per_task;
	job->min_cpus = job_desc->min_cpus;
	job->pn_min_memory = job_desc->pn_min_memory;
	job->tres_per_node = job_desc->tres_per_node;
	job->tres_per_job = job_desc->tres_per_job;
	job->array_inx = job_desc->array_inx;
	job->admin_comment = job_desc->admin_comment;
	job->job_id_str = job_desc->job_id_str;
}

/* Replace job_desc->admin_comment with text (Slurm's allocator). */
static void _set_admin_comment(job_desc_msg_t *job_desc, const char *text)
{
	slurm_xfree((void **) &job_desc->admin_comment);
	job_desc->admin_comment = slurm_xstrdup(text);
}

/*
 * Run asbb_admit (modify == 0) or asbb_modify and turn the decision into a
 * Slurm return code. err_msg may be NULL (job_modify has none in 22.05).
 */
static int _check(job_desc_msg_t *job_desc, int modify, uint32_t uid,
		  char **err_msg)
{
	char msg[ASBB_MSG_LEN] = "";
	char pw_buf[4096];
	struct passwd pw;
	const char *op = modify ? "job_modify" : "job_submit";
	const char *jid = job_desc->job_id_str ? job_desc->job_id_str : "new";
	asbb_decision_t out;
	asbb_job_t job;
	int rc, attempt;

	_job_from_desc(job_desc, _user_name(job_desc->user_id, &pw, pw_buf,
					    sizeof(pw_buf)), &job);
	memset(&out, 0, sizeof(out));

	for (attempt = 0; attempt < 2; attempt++) {
		if (!_initialised() &&
		    (_init_library(msg, sizeof(msg)) != ASBB_OK)) {
			/* Logged by _init_library; not the user's business. */
			snprintf(msg, sizeof(msg), "%s",
				 ASBB_NOT_CONFIGURED);
			rc = ASBB_ERR_NOT_INIT;
			break;
		}
		memset(&out, 0, sizeof(out));
		out.abi_version = ASBB_ABI_VERSION;
		msg[0] = '\0';
		if (modify)
			rc = asbb_modify(&job, &out, msg, sizeof(msg));
		else
			rc = asbb_admit(&job, &out, msg, sizeof(msg));
		if (rc != ASBB_ERR_NOT_INIT)
			break;
		/* Another caller ran asbb_fini (reconfigure): init again. */
		__atomic_store_n(&initialised, 0, __ATOMIC_RELEASE);
	}

	if (rc == ASBB_REFUSED) {
		slurm_info("%s: %s refused job %s uid=%u account=%s: %s",
			   plugin_type, op, jid, job_desc->user_id,
			   job_desc->account ? job_desc->account : "(null)",
			   msg);
		_set_user_msg(err_msg, msg[0] ? msg : ASBB_DEFAULT_REFUSAL);
		return ESLURM_ACCOUNTING_POLICY;
	}
	if (rc != ASBB_OK) {
		/*
		 * The library has already applied submit.on_db_error: an
		 * error here means the job must be refused.
		 */
		slurm_error("%s: %s failed for job %s uid=%u (rc=%d): %s",
			    plugin_type, op, jid, job_desc->user_id, rc, msg);
		if (!msg[0])
			snprintf(msg, sizeof(msg),
				 "asbb: the budget check failed (error %d); "
				 "the job was not submitted", rc);
		_set_user_msg(err_msg, msg);
		return ESLURM_ACCOUNTING_POLICY;
	}

	/*
	 * In job_modify Slurm refuses an admin_comment change by anyone but
	 * an administrator, even when the plugin makes it: the library keeps
	 * the hold id when it re-prices, and a new comment is set for root.
	 */
	if (out.admin_comment[0] && modify && (uid != 0))
		slurm_error("%s: job %s: cannot set admin_comment '%s' for uid %u",
			    plugin_type, jid, out.admin_comment, uid);
	else if (out.admin_comment[0])
		_set_admin_comment(job_desc, out.admin_comment);
	/* Shadow-mode and database-outage notices are for the user too. */
	if (msg[0] && ((out.kind == ASBB_KIND_SHADOW) ||
		       (out.kind == ASBB_KIND_DB_ACCEPT)))
		_set_user_msg(err_msg, msg);
	slurm_info("%s: %s job %s uid=%u %s hold=%s amount=%s",
		   plugin_type, op, jid, job_desc->user_id,
		   _kind_str(out.kind), out.hold_id[0] ? out.hold_id : "-",
		   out.amount[0] ? out.amount : "-");
	return SLURM_SUCCESS;
}

extern int init(void)
{
	char msg[ASBB_MSG_LEN] = "";
	int abi = asbb_abi_version();

	if (abi != ASBB_ABI_VERSION) {
		slurm_error("%s: libasbb.so has ABI %d, this plugin needs %d",
			    plugin_type, abi, ASBB_ABI_VERSION);
		return SLURM_ERROR;
	}
	/*
	 * A failure here (bad config) must not keep slurmctld from starting:
	 * it is logged, retried at each submission, and jobs are refused
	 * until it succeeds.
	 */
	(void) _init_library(msg, sizeof(msg));
	slurm_info("%s: loaded", plugin_type);
	return SLURM_SUCCESS;
}

extern int fini(void)
{
	pthread_mutex_lock(&init_lock);
	if (initialised)
		asbb_fini();
	__atomic_store_n(&initialised, 0, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&init_lock);
	return SLURM_SUCCESS;
}

extern int job_submit(job_desc_msg_t *job_desc, uint32_t submit_uid,
		      char **err_msg)
{
	return _check(job_desc, 0, submit_uid, err_msg);
}

/*
 * job_record_t is internal to slurmctld, so job_ptr stays opaque: the
 * library finds the job's hold by job_desc->job_id_str and merges the
 * changed fields of job_desc over the request stored with the hold.
 * Slurm 22.05 passes no err_msg here; the user sees only the error string.
 */
extern int job_modify(job_desc_msg_t *job_desc, void *job_ptr,
		      uint32_t submit_uid)
{
	(void) job_ptr;
	return _check(job_desc, 1, submit_uid, NULL);
}
