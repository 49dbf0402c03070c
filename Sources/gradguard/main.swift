import GradGuardCLI

GradGuardCommand.main()
