from .barron import GaussianMixtureMeasure as GaussianMixtureMeasure
from .barron import abs_gaussian_mean as abs_gaussian_mean
from .barron import barron_rate as barron_rate
from .barron import convex_rate_ratio as convex_rate_ratio
from .barron import feature_matrix as feature_matrix
from .barron import random_features_solution as random_features_solution
from .barron import relu_gaussian_moments as relu_gaussian_moments
from .barron import sampled_error as sampled_error
from .coupling import WidthFit as WidthFit
from .coupling import coupling_distance as coupling_distance
from .coupling import energy_ratio as energy_ratio
from .coupling import function_distance as function_distance
from .coupling import independent_w2 as independent_w2
from .coupling import jump_noise_ratio as jump_noise_ratio
from .coupling import loss_gain as loss_gain
from .coupling import synchronous_coupling as synchronous_coupling
from .coupling import training_change as training_change
from .coupling import width_exponents as width_exponents
from .coupling import width_fit as width_fit
from .entropic import control_variate_distances as control_variate_distances
from .entropic import control_variate_moments as control_variate_moments
from .entropic import control_variate_window as control_variate_window
from .entropic import gaussian_kl as gaussian_kl
from .entropic import gaussian_w2_sq as gaussian_w2_sq
from .entropic import mean_field_pull as mean_field_pull
from .entropic import relative_drift as relative_drift
from .entropic import tracking_statistic as tracking_statistic
from .entropy import gaussian_entropy as gaussian_entropy
from .entropy import kl_to_gaussian as kl_to_gaussian
from .entropy import knn_entropy as knn_entropy
from .entropy import w2_to_gaussian_bures as w2_to_gaussian_bures
from .entropy import w2_to_gaussian_sampled as w2_to_gaussian_sampled
from .gibbs import coordinate_stats as coordinate_stats
from .gibbs import em_ou_variance as em_ou_variance
from .gibbs import gaussian_free_energy as gaussian_free_energy
from .gibbs import gibbs_ks as gibbs_ks
from .gibbs import gibbs_on_grid as gibbs_on_grid
from .gibbs import knn_free_energy_bias as knn_free_energy_bias
from .gibbs import ou_stationary_stats as ou_stationary_stats
from .gibbs import potential_consistency as potential_consistency
from .gibbs import window_stats as window_stats
from .hessian import HessianReport as HessianReport
from .hessian import hessian_of_run as hessian_of_run
from .hessian import lanczos_extremes as lanczos_extremes
from .hessian import particle_hessian as particle_hessian
from .kernel import kernel_change as kernel_change
from .kernel import tangent_kernel as tangent_kernel
from .norms import path_norm as path_norm
from .teacher import EXAMPLE_2 as EXAMPLE_2
from .teacher import cluster_distances as cluster_distances
from .teacher import moment_zscores as moment_zscores
from .teacher import speed_ratio as speed_ratio
from .teacher import sphere_w2 as sphere_w2
from .teacher import vanishing_orders as vanishing_orders
from .teacher import wall_stats as wall_stats
from .transport import displacement_interpolation as displacement_interpolation
from .transport import optimal_map as optimal_map
from .transport import w2_1d as w2_1d
from .transport import w2_exact as w2_exact
from .transport import w2_sinkhorn as w2_sinkhorn
from .transport import w2_sliced as w2_sliced
from .transport import (
    wasserstein2 as wasserstein2,
)
from .two_layer import (
    breakpoint_concentration as breakpoint_concentration,
)
from .two_layer import (
    breakpoints as breakpoints,
)
from .two_layer import (
    relative_movement as relative_movement,
)
