import XCTest
@testable import GradGuard
