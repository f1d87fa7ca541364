"""Iris classifier: the example user project (a string and a float parameter).

The data is the iris table bundled with scikit-learn (no download). The split
and the model are seeded, so the same parameters always log the same metrics.
"""

from __future__ import annotations

import argparse

import mlflow
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

MODELS = ("logistic", "svm")  # both serialise with skops's default trusted types


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--C", type=float, required=True)
    args = parser.parse_args()
    if args.model not in MODELS:
        raise SystemExit(f"model must be one of {', '.join(MODELS)}; got {args.model!r}")
    if not args.C > 0:
        raise SystemExit(f"C must be > 0; got {args.C}")

    frame = load_iris(as_frame=True).frame
    x, y = frame.drop(columns=["target"]), frame["target"]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=7, stratify=y)
    if args.model == "logistic":
        clf = LogisticRegression(C=args.C, max_iter=500, random_state=7)
    else:
        clf = SVC(C=args.C, random_state=7)

    with mlflow.start_run():
        clf.fit(x_train, y_train)
        predicted = clf.predict(x_test)
        mlflow.log_metric("accuracy", float(accuracy_score(y_test, predicted)))
        mlflow.log_metric("f1_macro", float(f1_score(y_test, predicted, average="macro")))
        mlflow.sklearn.log_model(clf, name="model", input_example=x_test.head(3),
                                 pip_requirements=["scikit-learn", "skops"])


if __name__ == "__main__":
    main()
