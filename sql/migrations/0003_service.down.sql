DROP TABLE asbx_files;
DROP TABLE asbx_reconciliations;
DROP TABLE api_tokens;
