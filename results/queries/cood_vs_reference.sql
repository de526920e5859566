-- Our C-OOD levels next to the published ones (reference_cood_levels), by model id (reference_models), kappa and level.
-- A published name pairs with our model through reference_models.model_id (set by import-reference); a name that maps
-- to no model id pairs with our models of that architecture name (models.name), as before reference_models existed.
WITH pairs AS (
    SELECT model_id, model_name
    FROM reference_models
    WHERE model_id IS NOT NULL
    UNION
    SELECT m.model_id, r.model_name
    FROM models AS m
    JOIN (SELECT DISTINCT model_name FROM reference_cood_levels) AS r ON r.model_name = m.name
    WHERE r.model_name NOT IN (SELECT model_name FROM reference_models WHERE model_id IS NOT NULL)
)
SELECT
    c.model_id,
    r.model_name AS reference_model,
    c.kappa,
    c.level,
    c.ood_auroc,
    r.ood_auroc AS reference_ood_auroc,
    c.ood_auroc - r.ood_auroc AS ood_auroc_difference,
    c.id_accuracy,
    r.id_accuracy AS reference_id_accuracy
FROM cood_levels AS c
JOIN pairs AS p ON p.model_id = c.model_id
JOIN reference_cood_levels AS r
    ON r.model_name = p.model_name AND r.kappa = c.kappa AND r.level = c.level
ORDER BY c.model_id, r.model_name, c.kappa, c.level
