-- The evaluated models with their weights and preprocessing.
SELECT
    model_id,
    spec,
    source,
    name,
    pretrained_tag,
    pretrained,
    params,
    input_size,
    crop_pct,
    crop_mode,
    interpolation,
    weights_sha256,
    run_id
FROM models
ORDER BY model_id
