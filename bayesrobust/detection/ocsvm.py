"""One-class SVMs per class (the Choi analysis; scikit-learn): does an input look like the real
training digits of the class it is predicted as? Trained on raw pixels or, optionally, on the model's
features. Report both detection of adversarial images and false alarms on real digits."""

from __future__ import annotations

import numpy as np
import torch

from bayesrobust.detection.base import DETECTORS, Detector, DetectorKind, choose_threshold, images
from bayesrobust.seeding import make_generator


class OneClassSVMDetector(Detector):
    """One ``sklearn.svm.OneClassSVM`` (RBF kernel, ``gamma='scale'``) per class, fitted on at most
    ``per_class`` training digits of that class; the score of an input is minus the decision function
    of the SVM of its predicted class (higher = further outside the class)."""

    name = "ocsvm"

    def __init__(self, model, train_images: torch.Tensor, train_labels: torch.Tensor, *, space: str = "pixels",
                 nu: float = 0.05, per_class: int = 1000, samples: int = 50, seed: int = 0) -> None:
        from sklearn.svm import OneClassSVM

        if space not in ("pixels", "features"):
            raise ValueError(f"space must be 'pixels' or 'features', got {space!r}")
        self.model, self.space, self.samples, self.seed = model, space, samples, seed
        g = make_generator(seed)
        x = images(train_images, self.model)
        self.svms_ = {}
        for c in torch.unique(train_labels).tolist():
            idx = torch.nonzero(train_labels == c).squeeze(1)
            idx = idx[torch.randperm(len(idx), generator=g)[:per_class]]
            self.svms_[c] = OneClassSVM(kernel="rbf", gamma="scale", nu=nu).fit(self._vectors(x[idx]))
        self.threshold_ = 0.0  # the SVMs' own boundary until ``fit`` chooses one on validation data

    @torch.no_grad()
    def _vectors(self, x: torch.Tensor) -> np.ndarray:
        return (x.flatten(1) if self.space == "pixels" else self.model.features(x).cpu()).double().numpy()

    def score(self, x: torch.Tensor) -> np.ndarray:
        x = images(x, self.model)
        predicted = self.model.predictive(x, self.samples, generator=make_generator(self.seed)).predicted
        vectors = self._vectors(x)
        out = np.zeros(len(x))
        for c, svm in self.svms_.items():
            rows = (predicted == c).numpy()
            if rows.any():
                out[rows] = -svm.decision_function(vectors[rows])
        return out

    def fit(self, clean_val: torch.Tensor, adv_val: torch.Tensor | None = None) -> OneClassSVMDetector:
        """Choose the decision threshold on validation data (the SVMs are fitted on training digits)."""
        adv = None if adv_val is None or len(adv_val) == 0 else self.score(adv_val)
        self.threshold_ = choose_threshold(self.score(clean_val), adv)
        return self


DETECTORS.add("ocsvm", DetectorKind(lambda model, data, section, seed, vae, built: OneClassSVMDetector(
    model, data.train.images, data.train.labels, per_class=section.ocsvm_per_class, samples=section.samples, seed=seed)))
