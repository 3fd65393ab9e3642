from .vs_sonar import VsSonar, VsSonarConfig, builder_for_sizes

__all__ = ["VsSonar", "VsSonarConfig", "builder_for_sizes"]
