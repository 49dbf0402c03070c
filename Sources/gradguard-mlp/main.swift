import GradGuard
print("x")
