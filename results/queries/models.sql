-- The evaluated models with their weights, preprocessing, training regime and cost.
SELECT
    model_id,
    spec,
    source,
    name,
    pretrained_tag,
    pretrained,
    params,
    gmacs,
    family,
    pretraining,
    distilled,
    self_supervised,
    semi_supervised,
    clip,
    adversarial,
    input_size,
    crop_pct,
    crop_mode,
    interpolation,
    weights_sha256,
    run_id
FROM models
ORDER BY model_id
