-- Everything that went wrong: failed runs, failed tasks and unreadable input files, with their errors.
SELECT 'run' AS kind, run_id, NULL AS model_id, NULL AS dataset, NULL AS item, error
FROM runs
WHERE status IN ('failed', 'partial')
UNION ALL
SELECT 'task', run_id, model_id, dataset, 'shard ' || shard, error
FROM run_tasks
WHERE status = 'failed'
UNION ALL
SELECT 'bad_file', NULL, NULL, dataset, sample_id, error
FROM bad_files
ORDER BY kind, run_id NULLS LAST, model_id NULLS LAST, dataset, item
