--[[
job_submit.lua - ASBB budget enforcement for Slurm's job_submit/lua plugin.

Prices every submitted job through the Lua module "asbb" (asbb.so, over
libasbb.so) and takes a hold against the account's budget. A refused job
gets the reason through slurm.log_user and the error below; an accepted job
carries "asbb:<hold_id>" in its admin_comment. slurm_job_modify re-prices a
pending job whose request changes.

Install next to slurm.conf (Slurm reads it from slurm.conf's directory),
with asbb.so on Lua's package.cpath (e.g. /usr/local/lib/lua/5.1/asbb.so,
or LUA_CPATH in slurmctld's environment, or ASBB.cpath below), and set
JobSubmitPlugins=lua. Lua 5.1 (Debian's Slurm 22.05).
--]]

-- Site settings.
local ASBB = {
	-- Config file of libasbb.so; nil = $ASBB_CONFIG or /etc/asbb/asbb.toml.
	config = nil,
	-- Extra package.cpath entries for asbb.so, e.g. "/opt/asbb/lib/?.so".
	cpath = nil,
	-- Skip the budget check for jobs submitted by root. Off: root's jobs
	-- are priced and held like everyone's.
	exempt_root = false,
	-- Other submitting uids to skip, as a set: { [990] = true }.
	exempt_uids = {},
	-- Returned for a refused job. ESLURM_ACCOUNTING_POLICY prints "Job
	-- violates accounting/QOS policy ...", which is also all a user sees
	-- for a refused job_modify in 22.05 (log_user is dropped there).
	refuse_rc = slurm.ESLURM_ACCOUNTING_POLICY,
}

local NO_VAL = slurm.NO_VAL
local NO_VAL16 = slurm.NO_VAL16

if ASBB.cpath then
	package.cpath = ASBB.cpath .. ";" .. package.cpath
end

local loaded, asbb = pcall(require, "asbb")
if loaded then
	local ok, msg = asbb.init(ASBB.config)
	if ok then
		slurm.log_info("asbb: loaded (%s)", msg)
	else
		slurm.log_error("asbb: init failed, jobs are refused until it " ..
			"succeeds: %s", tostring(msg))
	end
else
	slurm.log_error("asbb: cannot load the Lua module, jobs are " ..
		"refused: %s", tostring(asbb))
	asbb = nil
end

local function exempt(uid)
	return (ASBB.exempt_root and uid == 0) or ASBB.exempt_uids[uid] == true
end

-- A number field that Slurm has set, or nil.
local function set_num(v, unset)
	if v == nil or v == unset then
		return nil
	end
	return v
end

-- The request as asbb_job_t field names, from a job_desc at submit time.
local function request_from_desc(job_desc)
	return {
		account = job_desc.account,
		partition = job_desc.partition,
		user_name = job_desc.user_name,
		user_id = job_desc.user_id,
		time_limit = job_desc.time_limit,
		min_nodes = job_desc.min_nodes,
		max_nodes = job_desc.max_nodes,
		num_tasks = job_desc.num_tasks,
		cpus_per_task = job_desc.cpus_per_task,
		min_cpus = job_desc.min_cpus,
		-- Not pn_min_memory: its MEM_PER_CPU bit does not survive a double.
		min_mem_per_cpu = job_desc.min_mem_per_cpu,
		min_mem_per_node = job_desc.min_mem_per_node,
		tres_per_node = job_desc.tres_per_node,
		tres_per_job = job_desc.tres_per_job,
		array_inx = job_desc.array_inx,
		admin_comment = job_desc.admin_comment,
	}
end

-- The slurm id of a job record: "<array_job_id>_<task>" for an array task.
local function job_id_str(job_rec)
	local task = job_rec.array_task_id
	if task ~= nil and task ~= NO_VAL and job_rec.array_job_id ~= 0 then
		return string.format("%d_%d", job_rec.array_job_id, task)
	end
	return string.format("%d", job_rec.job_id)
end

-- A job record number that holds a value: 0 means "none" for max_nodes and
-- the memory fields of a job record.
local function rec_num(v)
	if v == nil or v == 0 or v == NO_VAL then
		return nil
	end
	return v
end

-- The changed fields of job_desc merged over the job's current values.
local function request_from_modify(job_desc, job_rec)
	local mem_cpu, mem_node = job_desc.min_mem_per_cpu, job_desc.min_mem_per_node
	if mem_cpu == nil and mem_node == nil then
		mem_cpu = rec_num(job_rec.min_mem_per_cpu)
		mem_node = rec_num(job_rec.min_mem_per_node)
	end
	return {
		account = job_desc.account or job_rec.account,
		partition = job_desc.partition or job_rec.partition,
		-- job_rec.user_name is nil in 22.05; slurmctld copies the
		-- job's user_id into job_desc before job_modify, and
		-- job_desc.user_name resolves it.
		user_name = job_desc.user_name or job_rec.user_name,
		user_id = job_rec.user_id,
		time_limit = set_num(job_desc.time_limit, NO_VAL) or
			job_rec.time_limit,
		min_nodes = set_num(job_desc.min_nodes, NO_VAL) or
			rec_num(job_rec.min_nodes),
		max_nodes = set_num(job_desc.max_nodes, NO_VAL) or
			rec_num(job_rec.max_nodes),
		-- The job record does not expose these: unset unless changed.
		num_tasks = job_desc.num_tasks,
		cpus_per_task = set_num(job_desc.cpus_per_task, NO_VAL16),
		min_cpus = set_num(job_desc.min_cpus, NO_VAL) or
			rec_num(job_rec.min_cpus),
		min_mem_per_cpu = mem_cpu,
		min_mem_per_node = mem_node,
		tres_per_node = job_desc.tres_per_node or job_rec.tres_per_node,
		tres_per_job = job_desc.tres_per_job or job_rec.tres_per_job,
		array_inx = job_desc.array_inx,
		-- Carries "asbb:<hold_id>".
		admin_comment = job_desc.admin_comment or job_rec.admin_comment,
		job_id_str = job_id_str(job_rec),
	}
end

-- Calls asbb.admit or asbb.modify; returns rc, kind, msg, admin_comment.
local function decide(fn, req)
	local ok, rc, kind, msg, comment = pcall(fn, req)
	if not ok then
		return asbb.ERR_INTERNAL, "none", "asbb: " .. tostring(rc), ""
	end
	return rc, kind, msg, comment
end

function slurm_job_submit(job_desc, part_list, submit_uid)
	if exempt(submit_uid) then
		return slurm.SUCCESS
	end
	if asbb == nil then
		slurm.log_user("asbb: the budget check is unavailable; " ..
			"the job was not submitted")
		return ASBB.refuse_rc
	end

	local rc, kind, msg, comment = decide(asbb.admit,
		request_from_desc(job_desc))
	if rc == asbb.ERR_NOT_INIT or rc == asbb.ERR_CONFIG then
		-- msg is for the administrator.
		slurm.log_error("asbb: job_submit: library not initialised " ..
			"(rc=%d): %s", rc, tostring(msg))
		slurm.log_user("asbb: the budget check is not available; " ..
			"the job was not submitted")
		return ASBB.refuse_rc
	end
	if rc ~= asbb.OK then
		-- REFUSED, or an error the library's on_db_error policy
		-- turned into a refusal.
		if msg == nil or msg == "" then
			msg = string.format("asbb: the budget check failed " ..
				"(error %d); the job was not submitted", rc)
		end
		slurm.log_info("asbb: job_submit refused uid=%d account=%s " ..
			"rc=%d: %s", submit_uid, tostring(job_desc.account),
			rc, msg)
		slurm.log_user("%s", msg)
		return ASBB.refuse_rc
	end

	if comment ~= "" then
		job_desc.admin_comment = comment
	end
	if (kind == "shadow" or kind == "db_accept") and msg ~= "" then
		slurm.log_user("%s", msg)
	end
	return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
	if exempt(modify_uid) then
		return slurm.SUCCESS
	end
	if asbb == nil then
		slurm.log_error("asbb: job_modify of job %d refused: the " ..
			"budget check is unavailable", job_rec.job_id)
		return ASBB.refuse_rc
	end

	local req = request_from_modify(job_desc, job_rec)
	local rc, kind, msg, comment = decide(asbb.modify, req)
	if rc ~= asbb.OK then
		-- slurm.log_user is not shown for job_modify in 22.05.
		slurm.log_info("asbb: job_modify refused job %s uid=%d rc=%d: %s",
			req.job_id_str, modify_uid, rc, tostring(msg))
		return ASBB.refuse_rc
	end
	-- Slurm refuses an admin_comment change by a non-admin even when the
	-- plugin makes it, so the library keeps the hold id on re-pricing
	-- and a changed comment is only set for root.
	if comment ~= "" and comment ~= job_rec.admin_comment then
		if modify_uid == 0 then
			job_desc.admin_comment = comment
		else
			slurm.log_error("asbb: job %s: cannot set admin_comment " ..
				"'%s' for uid %d", req.job_id_str, comment,
				modify_uid)
		end
	end
	return slurm.SUCCESS
end

slurm.log_info("asbb: job_submit.lua initialized")
return slurm.SUCCESS
