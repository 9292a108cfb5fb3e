"""The Trainer's starting weights: the normalisation they bring, their report, and fine-tuning from a checkpoint
whose head differs."""

from __future__ import annotations

from visionkit.errors import UsageError


class StartingWeights:
    """Mixed into the Trainer: how it starts from weights it did not train (they read and set the trainer's state)."""

    def _set_normalisation(self) -> None:
        """mean/std: the user's, else those the starting weights were trained with, else the data's."""
        a, data = self.args, self.data
        came = None
        if self.weights_report is not None and self.weights_report.mean is not None:
            came = (self.weights_report.mean, self.weights_report.std, self.weights_report.norm_source)
        elif self.init_norm is not None:
            came = (*self.init_norm, "from the starting checkpoint")
        mean, std = list(data.mean), list(data.std)
        if came is not None:
            m, s = list(came[0]), list(came[1])
            if len(m) != data.channels and data.channels == 1:  # RGB statistics for grey input: their average
                m, s = [sum(m) / len(m)], [sum(s) / len(s)]
            if len(m) == data.channels:
                mean, std = m, s
            elif self.verbose:
                print(f"normalisation {came[2]} has {len(m)} channels, the data {data.channels}: using the data's")
        if a.mean is not None or a.std is not None:
            mean = list(a.mean) if a.mean is not None else mean
            std = list(a.std) if a.std is not None else std
            for key, value in (("mean", mean), ("std", std)):
                if len(value) != data.channels:
                    raise UsageError(f"{key}={value} has {len(value)} values; the data has {data.channels} channels")
        data.mean, data.std = tuple(mean), tuple(std)

    def _print_weights_report(self) -> None:
        r = self.weights_report
        print(r.summary())
        if r.mean is not None:
            print(f"normalisation ({r.norm_source}): mean {list(self.data.mean)}, std {list(self.data.std)}")
        at_init = [k for k, _ in r.left_at_init if not k.startswith("head.")]
        if at_init:
            print(f"left at init outside the head: {', '.join(at_init[:8])}{' ...' if len(at_init) > 8 else ''}")
        print(f"full list: {self.save_dir / 'weights_report.txt'}")

    def _load_matching(self, state: dict) -> None:
        """Fine-tuning: copy every tensor whose name and shape match (a new head for new classes stays fresh)."""
        own = self.model.state_dict()
        matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        self.model.load_state_dict(matched, strict=False)
        if self.verbose:
            print(f"loaded {len(matched)}/{len(own)} tensors from the starting checkpoint")
