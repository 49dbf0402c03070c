import GradGuardCLI

GradGuardCommand.runAndExit()
