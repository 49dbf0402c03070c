import GradGuard
