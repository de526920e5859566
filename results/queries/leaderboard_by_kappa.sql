-- Selective prediction leaderboard of each κ by AUROC (no temperature scaling, every ID sample), ranked within the κ.
-- One row per (κ, model); the report shows the feature-space detectors' (κ det_<name>) first rows. ECE is left
-- out: it is NULL for a κ whose score is not a probability (the detectors).
SELECT kappa, rank, model_id, params, accuracy, auroc, aurc, eaurc, augrc, sac99
FROM selective_ranked
ORDER BY kappa, rank, model_id
