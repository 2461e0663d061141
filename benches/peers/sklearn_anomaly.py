#!/usr/bin/env python3
"""scikit-learn peer of benches/ml_anomaly.rs.

Same data, same split, same pipeline as ours: the scaler (RobustScaler unless
--scaler says standard, minmax or none) fitted on the training split, then IsolationForest(100 trees, max_samples='auto', random_state=42),
OneClassSVM(rbf, gamma='scale', nu=NU) or LocalOutlierFactor(n_neighbors=20,
novelty=True); fitted on the whole training split (labels unused), scored on the
test split (score = -score_samples). Split: row i is test when i % 10 >= 7.

Prints one JSON list: [{dataset, backend, auc, fit_score_s, n_train, n_test, d}].
`n_jobs` is --threads (ours uses that many threads; libsvm's one-class SVM is
single-threaded on both sides).
Usage: sklearn_anomaly.py ADBENCH_DIR dataset[,dataset...] [--nu 0.1] [--repeat 1]
       [--scaler robust] [--threads 1]
"""
import json
import sys
import time

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, RobustScaler, StandardScaler
from sklearn.svm import OneClassSVM

SCALERS = {"robust": RobustScaler, "standard": StandardScaler, "minmax": MinMaxScaler, "none": FunctionTransformer}
FILES = {"cardio": "6_cardio.npz", "thyroid": "38_thyroid.npz", "shuttle": "32_shuttle.npz", "breastw": "4_breastw.npz"}


def main():
    root, names = sys.argv[1], sys.argv[2].split(",")
    nu = float(sys.argv[sys.argv.index("--nu") + 1]) if "--nu" in sys.argv else 0.1
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 1
    scaler = sys.argv[sys.argv.index("--scaler") + 1] if "--scaler" in sys.argv else "robust"
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 1
    out = []
    for name in names:
        z = np.load(f"{root}/{FILES[name]}")
        X, y = z["X"].astype(np.float64), z["y"].astype(np.float64)
        test = (np.arange(len(X)) % 10) >= 7
        Xtr, Xte, yte = X[~test], X[test], y[test]
        for backend in ["isolation_forest", "one_class_svm", "local_outlier_factor"]:
            best = None
            for _ in range(repeat):
                t0 = time.perf_counter()
                sc = SCALERS[scaler]().fit(Xtr)
                A, B = sc.transform(Xtr), sc.transform(Xte)
                if backend == "isolation_forest":
                    m = IsolationForest(n_estimators=100, random_state=42, contamination=0.1, n_jobs=threads).fit(A)
                elif backend == "one_class_svm":
                    m = OneClassSVM(kernel="rbf", gamma="scale", nu=nu).fit(A)
                else:
                    m = LocalOutlierFactor(n_neighbors=20, novelty=True, contamination=0.1, n_jobs=threads).fit(A)
                s = -m.score_samples(B)
                dt = time.perf_counter() - t0
                best = dt if best is None else min(best, dt)
            out.append({"dataset": name, "backend": backend, "auc": float(roc_auc_score(yte, s)), "fit_score_s": best,
                        "n_train": int(len(Xtr)), "n_test": int(len(Xte)), "d": int(X.shape[1]), "scaler": scaler, "n_jobs": threads,
                        "sklearn": sklearn.__version__})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
