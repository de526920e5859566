-- Runs with their provenance and how many (model, dataset, shard) tasks succeeded or failed.
SELECT
    r.run_id,
    r.status,
    r.started_at,
    r.finished_at,
    r.code_version,
    r.torch_version,
    r.timm_version,
    r.device,
    r.precision,
    count(t.model_id) AS tasks,
    count(t.model_id) FILTER (WHERE t.status = 'ok') AS tasks_ok,
    count(t.model_id) FILTER (WHERE t.status IN ('reused', 'skipped_existing')) AS tasks_reused,
    count(t.model_id) FILTER (WHERE t.status = 'failed') AS tasks_failed
FROM runs AS r
LEFT JOIN run_tasks AS t USING (run_id)
GROUP BY ALL
ORDER BY r.started_at, r.run_id
